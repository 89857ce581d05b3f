package yubikey

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// WrongPINMemoFile is the file, in Config.StateDir, where a wrong-PIN stop is remembered by
// the PIN file's identity (path, device, inode, size, modification time; nothing derived from
// the PIN, which a hash of a 6-8 character PIN would not protect).
const WrongPINMemoFile = "wrong-pin.json"

// ErrKnownWrongPIN: the PIN file is unchanged since its PIN was refused by the card; it is not
// tried again (*KnownWrongPINError, which also matches ErrWrongPIN).
var ErrKnownWrongPIN = errors.New("the PIN file is unchanged since its PIN was wrong")

// KnownWrongPINError refuses a PIN file whose PIN the card refused before, the file unchanged
// since. Nothing was sent to the card.
type KnownWrongPINError struct {
	Path    string
	When    time.Time
	Retries int    // retries left after that attempt
	Memo    string // the file remembering it
}

func (e *KnownWrongPINError) Error() string {
	return fmt.Sprintf("the PIN in %s was wrong on %s (%d %s left then); fix the file first (it was not tried again: an unchanged file holds the same wrong PIN; remembered in %s)",
		e.Path, e.When.UTC().Format("2006-01-02 15:04:05 MST"), e.Retries, plural(e.Retries, "retry", "retries"), e.Memo)
}

func (e *KnownWrongPINError) Is(target error) bool {
	return target == ErrKnownWrongPIN || target == ErrWrongPIN
}

// pinFileID is what identifies a PIN file's content without reading the PIN: any edit, replace
// or touch changes one of these.
type pinFileID struct {
	Path    string    `json:"path"`
	Dev     uint64    `json:"dev"`
	Inode   uint64    `json:"inode"`
	Size    int64     `json:"size"`
	ModTime time.Time `json:"mtime"`
}

type wrongPINRecord struct {
	File    pinFileID `json:"file"`
	Serial  uint32    `json:"serial"`
	Retries int       `json:"retries_left"`
	When    time.Time `json:"when"`
}

func statPINFile(path string) (pinFileID, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return pinFileID{}, err
	}
	fi, err := os.Stat(abs)
	if err != nil {
		return pinFileID{}, err
	}
	dev, ino := fileDevIno(fi)
	return pinFileID{Path: abs, Dev: dev, Inode: ino, Size: fi.Size(), ModTime: fi.ModTime().UTC()}, nil
}

// pinMemo remembers wrong-PIN stops in one JSON file (records keyed by the PIN file's path).
type pinMemo struct{ path string }

// memoFor is the memo in stateDir, or when empty in $XDG_STATE_HOME/hilbench (default
// ~/.local/state/hilbench).
func memoFor(stateDir string) (pinMemo, error) {
	if stateDir == "" {
		base := os.Getenv("XDG_STATE_HOME")
		if base == "" {
			home, err := os.UserHomeDir()
			if err != nil {
				return pinMemo{}, fmt.Errorf("no signer state directory and no home directory to remember a wrong PIN in: %w", err)
			}
			base = filepath.Join(home, ".local", "state")
		}
		stateDir = filepath.Join(base, "hilbench")
	}
	return pinMemo{path: filepath.Join(stateDir, WrongPINMemoFile)}, nil
}

func (m pinMemo) load() (map[string]wrongPINRecord, error) {
	recs := map[string]wrongPINRecord{}
	data, err := os.ReadFile(m.path)
	if errors.Is(err, fs.ErrNotExist) {
		return recs, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading the wrong-PIN record %s: %w", m.path, err)
	}
	if err := json.Unmarshal(data, &recs); err != nil {
		return nil, fmt.Errorf("reading the wrong-PIN record %s: %v (remove it only once the PIN file is right)", m.path, err)
	}
	return recs, nil
}

func (m pinMemo) save(recs map[string]wrongPINRecord) error {
	if err := os.MkdirAll(filepath.Dir(m.path), 0o700); err != nil {
		return err
	}
	if len(recs) == 0 {
		if err := os.Remove(m.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		return nil
	}
	data, err := json.MarshalIndent(recs, "", "  ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(m.path), WrongPINMemoFile+".*")
	if err != nil {
		return err
	}
	_, werr := tmp.Write(append(data, '\n'))
	if err := errors.Join(werr, tmp.Sync(), tmp.Close()); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	return os.Rename(tmp.Name(), m.path)
}

// check refuses id when the memo holds a wrong-PIN stop for the same path and the file is
// unchanged since (same device, inode, size and modification time).
func (m pinMemo) check(id pinFileID) error {
	recs, err := m.load()
	if err != nil {
		return err
	}
	r, ok := recs[id.Path]
	if !ok || r.File.Dev != id.Dev || r.File.Inode != id.Inode || r.File.Size != id.Size || !r.File.ModTime.Equal(id.ModTime) {
		return nil
	}
	return &KnownWrongPINError{Path: id.Path, When: r.When, Retries: r.Retries, Memo: m.path}
}

func (m pinMemo) record(id pinFileID, serial uint32, retries int, when time.Time) error {
	recs, err := m.load()
	if err != nil {
		recs = map[string]wrongPINRecord{} // a corrupt memo is replaced by what we know now
	}
	recs[id.Path] = wrongPINRecord{File: id, Serial: serial, Retries: retries, When: when.UTC()}
	return m.save(recs)
}

// forget drops the record of path (its PIN worked).
func (m pinMemo) forget(path string) error {
	recs, err := m.load()
	if err != nil {
		return err
	}
	if _, ok := recs[path]; !ok {
		return nil
	}
	delete(recs, path)
	return m.save(recs)
}
