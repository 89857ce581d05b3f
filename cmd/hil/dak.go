package main

import (
	"fmt"
	"io"

	"hilbench/harness/signer/softdak"
)

const dakUsage = `hil dak: development DAKs

  hil dak init [--dir DIR] [--force]   make a development software DAK and its root in DIR, for
                                       benches without a DAK from the AVS console (never for production)
`

func cmdDakInit(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("dak init", "[--dir DIR] [--force]\n\nMake a development software DAK (dak_private_key.pem, dak-certificate.pem) and its root\nin DIR, for benches without a DAK from the AVS console. Never for production.", stdout)
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
