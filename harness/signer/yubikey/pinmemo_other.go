//go:build !unix

package yubikey

import "os"

func fileDevIno(os.FileInfo) (dev, ino uint64) { return 0, 0 }
