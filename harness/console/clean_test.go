package console

import "testing"

func TestClean(t *testing.T) {
	cases := []struct{ in, want string }{
		{"hello\r\nhil$ \x1b[6n", "hello\nhil$ "},
		{"xxxx\r\r\nyy\r\n", "xxxx\nyy\n"},             // busybox echo wrap
		{"a\x1b[1;32mgreen\x1b[0m", "agreen"},          // SGR
		{"\x1b]0;title\x07after", "after"},             // OSC with BEL
		{"\x1b]2;t\x1b\\after", "after"},               // OSC with ST
		{"\x1b(Bx\x1b7y\x1b8", "xy"},                   // charset, save/restore
		{"\x1bhil$ ", "hil$ "},                         // stray ESC: the text survives
		{"cr only\rnext\r", "cr only\nnext"},           // CR line ends
		{"tab\there\x00\x07\x08\x7f", "tab\there"},     // controls dropped, TAB kept
		{"\x1b]noise without end\nline\n", "\nline\n"}, // runaway OSC ends at LF
		{"\x1b[12;\x80x", "\x80x"},                     // malformed CSI keeps the byte
		{"caf\xc3\xa9 \xff", "caf\xc3\xa9 \xff"},       // bytes >= 0x80 stay
		{"a\r\x1b[K\nb", "a\nb"},                       // erase-line between CR and LF
	}
	for _, tc := range cases {
		if got := clean(tc.in); got != tc.want {
			t.Errorf("clean(%q) = %q, want %q", tc.in, got, tc.want)
		}
		// Split at every point: the streaming cleaner must agree.
		for i := 1; i < len(tc.in); i++ {
			var c cleaner
			out := c.feed(nil, []byte(tc.in[:i]))
			out = c.feed(out, []byte(tc.in[i:]))
			if string(out) != tc.want {
				t.Errorf("clean(%q) split at %d = %q, want %q", tc.in, i, out, tc.want)
			}
		}
	}
}
