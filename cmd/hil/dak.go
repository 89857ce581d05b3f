package main

import (
	"fmt"
	"io"

	"hilbench/harness/signer/softdak"
)

func cmdDakInit(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("dak init", stderr)
	dir := fs.String("dir", ".", "directory to write the development DAK into")
	force := fs.Bool("force", false, "overwrite existing files")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	res, err := softdak.InitDevelopment(*dir, softdak.InitOptions{Force: *force})
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, "development DAK written (for benches without an Amazon DAK; never for production):")
	for _, p := range res.Written {
		fmt.Fprintln(stdout, " ", p)
	}
	return nil
}
