//go:build race

package main

// raceEnabled: the test binary (and so every hil it starts in the crash campaign) runs under the
// race detector, several times slower.
const raceEnabled = true
