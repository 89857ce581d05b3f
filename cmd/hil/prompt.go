package main

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// errNoTerminal: secrets (PUK, PINs, management keys) are typed at an interactive prompt only,
// never taken from a flag, a file or the environment, where they would outlive the moment.
var errNoTerminal = errors.New("secrets are typed at an interactive prompt: run this command from a terminal")

// readSecret asks for a secret on the controlling terminal with echo off.
func readSecret(prompt string) (string, error) {
	tty, err := os.OpenFile("/dev/tty", os.O_RDWR, 0)
	if err != nil {
		return "", errNoTerminal
	}
	defer tty.Close()
	fd := int(tty.Fd())
	old, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return "", errNoTerminal
	}
	quiet := *old
	quiet.Lflag &^= unix.ECHO
	quiet.Lflag |= unix.ICANON
	if err := unix.IoctlSetTermios(fd, unix.TCSETS, &quiet); err != nil {
		return "", fmt.Errorf("turning terminal echo off: %w", err)
	}
	defer unix.IoctlSetTermios(fd, unix.TCSETS, old)
	fmt.Fprint(tty, prompt)
	line, err := bufio.NewReader(tty).ReadString('\n')
	fmt.Fprintln(tty)
	if err != nil {
		return "", fmt.Errorf("reading from the terminal: %w", err)
	}
	return strings.TrimRight(line, "\r\n"), nil
}

// readNewSecret asks twice and insists both agree.
func readNewSecret(what string) (string, error) {
	a, err := readSecret("new " + what + ": ")
	if err != nil {
		return "", err
	}
	b, err := readSecret("new " + what + " again: ")
	if err != nil {
		return "", err
	}
	if a != b {
		return "", fmt.Errorf("the two %ss differ; nothing changed", what)
	}
	return a, nil
}
