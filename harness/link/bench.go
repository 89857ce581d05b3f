package link

import "hilbench/harness/bench"

// ConfigFromBench is the serial configuration of a bench target's console.
func ConfigFromBench(c bench.Console) Config {
	cfg := Config{
		Port:     c.Port,
		Baud:     c.Baud,
		DataBits: c.DataBits,
		Parity:   c.Parity,
		StopBits: c.StopBits,
		Reopen:   c.Reopen,
	}
	if u := c.USB; u != nil {
		cfg.USB = &USBID{VID: u.VID, PID: u.PID, Serial: u.Serial}
	}
	return cfg
}
