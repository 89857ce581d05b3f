//go:build race

package bench_test

// raceEnabled: this test binary runs under the race detector, which makes the YAML parser about
// ten times slower.
const raceEnabled = true
