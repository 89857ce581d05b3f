package softdak

import (
	"errors"
	"fmt"
	"io/fs"
	"strings"
)

// Sentinel errors for errors.Is.
var (
	// ErrInsecureKeyFile: the key file is accessible to group or others.
	ErrInsecureKeyFile = errors.New("DAK key file is accessible to group or others")
	// ErrEncryptedKey: the key file holds an encrypted key, which softdak
	// cannot use (it has nowhere safe to get a passphrase from).
	ErrEncryptedKey = errors.New("DAK key is encrypted")
	// ErrNoKey: the key file holds no private key.
	ErrNoKey = errors.New("no private key found")
	// ErrUnsupportedKey: the key is not an ECDSA key.
	ErrUnsupportedKey = errors.New("unsupported DAK key type")
	// ErrNoCertificate: the certificate file holds no certificate.
	ErrNoCertificate = errors.New("no certificate found")
)

// PermissionError reports a key file whose mode lets group or others read
// or write it. It matches ErrInsecureKeyFile.
type PermissionError struct {
	Path string
	Mode fs.FileMode
}

func (e *PermissionError) Error() string {
	return fmt.Sprintf("DAK key file %s has mode %04o (%s): a private key must not be readable or writable by group or others; fix it with: chmod 600 %s",
		e.Path, uint32(e.Mode.Perm()), e.Mode.Perm(), e.Path)
}

func (e *PermissionError) Is(target error) bool { return target == ErrInsecureKeyFile }

// ExistsError reports files InitDevelopment would overwrite. It matches
// fs.ErrExist.
type ExistsError struct {
	Dir   string
	Paths []string
}

func (e *ExistsError) Error() string {
	return fmt.Sprintf("refusing to overwrite existing %s in %s (use --force to replace them)",
		strings.Join(e.Paths, ", "), e.Dir)
}

func (e *ExistsError) Is(target error) bool { return target == fs.ErrExist }

// ErrInsecureKeyDir: a directory on the key file's path is writable by group or others, who
// could replace the key (or the certificate next to it) with their own.
var ErrInsecureKeyDir = errors.New("DAK key file is in a directory writable by group or others")

// DirectoryError reports a key file in a directory (or under one) that group or others may
// write to, as ssh refuses an authorized_keys file there. A sticky directory owned by root
// (/tmp) is fine: nobody else can rename or remove what is in it. It matches
// ErrInsecureKeyDir and ErrInsecureKeyFile.
type DirectoryError struct {
	Path string      // the key file
	Dir  string      // the offending directory
	Mode fs.FileMode // its mode
}

func (e *DirectoryError) Error() string {
	return fmt.Sprintf("DAK key file %s is in directory %s with mode %04o (%s): group or others may write there and replace the key; fix it with: chmod go-w %s",
		e.Path, e.Dir, uint32(e.Mode.Perm()), e.Mode.Perm(), e.Dir)
}

func (e *DirectoryError) Is(target error) bool {
	return target == ErrInsecureKeyDir || target == ErrInsecureKeyFile
}
