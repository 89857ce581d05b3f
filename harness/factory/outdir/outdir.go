// Package outdir writes a batch of output files into a directory all or nothing: every file is
// written and synced under a temporary name first, and only when all of them are whole are they
// renamed into place. A directory that cannot be written, a full disk or a failed write leaves
// no file of the batch behind, neither whole nor half.
package outdir

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// File is one output: a base name inside the directory and its contents.
type File struct {
	Name string
	Data []byte
	Mode os.FileMode // 0: 0o644
}

// Write creates dir if needed and writes files into it, all or nothing (up to the renames, which
// cannot fail for want of space). Names must be plain base names, unique in the batch.
func Write(dir string, files []File) (err error) {
	seen := map[string]bool{}
	for _, f := range files {
		if f.Name == "" || f.Name != filepath.Base(f.Name) || strings.HasPrefix(f.Name, ".") {
			return fmt.Errorf("output file name %q: want a plain file name", f.Name)
		}
		if seen[f.Name] {
			return fmt.Errorf("output file %s given twice in one batch", f.Name)
		}
		seen[f.Name] = true
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("output directory: %w", err)
	}
	temps := make([]string, 0, len(files))
	defer func() {
		if err != nil {
			for _, t := range temps {
				os.Remove(t)
			}
		}
	}()
	for _, f := range files {
		t, err := writeTemp(dir, f)
		if t != "" {
			temps = append(temps, t)
		}
		if err != nil {
			return fmt.Errorf("writing %s: %w", filepath.Join(dir, f.Name), err)
		}
	}
	for i, f := range files {
		if err := os.Rename(temps[i], filepath.Join(dir, f.Name)); err != nil {
			return fmt.Errorf("writing %s: %w", filepath.Join(dir, f.Name), err)
		}
	}
	temps = temps[:0]
	if err := syncDir(dir); err != nil {
		return fmt.Errorf("output directory %s: %w", dir, err)
	}
	return nil
}

func writeTemp(dir string, f File) (string, error) {
	tmp, err := os.CreateTemp(dir, "."+f.Name+".tmp*")
	if err != nil {
		return "", err
	}
	mode := f.Mode
	if mode == 0 {
		mode = 0o644
	}
	_, err = tmp.Write(f.Data)
	if err == nil {
		err = tmp.Chmod(mode)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	return tmp.Name(), err
}

// syncDir makes the renames durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if errors.Is(err, os.ErrInvalid) {
		return nil // a file system without directory sync
	}
	return err
}
