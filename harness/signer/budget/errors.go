package budget

import (
	"errors"
	"fmt"
)

// Sentinels for errors.Is; the typed errors below match them.
var (
	// ErrExhausted: the DAK has made its maximum number of signatures.
	ErrExhausted = errors.New("DAK signature budget exhausted")
	// ErrOtherDAK: the counter file counts another DAK's signatures.
	ErrOtherDAK = errors.New("signature budget file belongs to another DAK")
	// ErrCorrupt: the counter file cannot be read as a counter.
	ErrCorrupt = errors.New("signature budget file is corrupt")
)

// ExhaustedError says the budget is spent. It matches ErrExhausted.
type ExhaustedError struct {
	Path    string // the counter file
	Used    int64
	Max     int64
	Subject string // the DAK certificate's subject
}

func (e *ExhaustedError) Error() string {
	return fmt.Sprintf("DAK signature budget exhausted: %d/%d signatures used by DAK %q (counter %s); "+
		"this DAK must not sign again: request a new DAK for the device profile (the DAK's maximum number of signatures: \"Amazon Sidewalk bulk provisioning workflow\", AWS IoT Wireless Developer Guide) "+
		"and configure the bench with it", e.Used, e.Max, e.Subject, e.Path)
}

func (e *ExhaustedError) Is(target error) bool { return target == ErrExhausted }

// DAKMismatchError says the counter file was made for another DAK. It
// matches ErrOtherDAK.
type DAKMismatchError struct {
	Path        string
	FileSHA256  string // DAK certificate SHA-256 recorded in the file
	FileSubject string
	SHA256      string // SHA-256 of the DAK certificate given to Open
	Subject     string
}

func (e *DAKMismatchError) Error() string {
	return fmt.Sprintf("signature budget %s counts DAK %q (certificate SHA-256 %s), not this DAK %q (certificate SHA-256 %s): "+
		"each DAK needs its own counter file (bench signer.state_dir); never reuse or delete a counter to reset it",
		e.Path, e.FileSubject, e.FileSHA256, e.Subject, e.SHA256)
}

func (e *DAKMismatchError) Is(target error) bool { return target == ErrOtherDAK }

// CorruptError says the counter file cannot be trusted. It matches ErrCorrupt.
type CorruptError struct {
	Path   string
	Detail string
}

func (e *CorruptError) Error() string {
	return fmt.Sprintf("signature budget %s is corrupt (%s): refusing to guess the count; "+
		"restore it from a backup or reconstruct the count from the audit log", e.Path, e.Detail)
}

func (e *CorruptError) Is(target error) bool { return target == ErrCorrupt }
