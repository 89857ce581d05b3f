//go:build !unix

package softdak

// checkKeyDirs: no Unix permission bits to check here.
func checkKeyDirs(string) error { return nil }
