package usb

import (
	"syscall"
	"time"
)

// preciseSleepMax bounds the waits slept without watching the context: short polls only.
const preciseSleepMax = 100 * time.Millisecond

// preciseSleep blocks the thread in nanosleep. Runtime timers wake 0.1-0.2 ms late here
// (the netpoller waits in whole milliseconds), which costs 3-4% of a 5 ms poll per block.
func preciseSleep(d time.Duration) {
	ts := syscall.NsecToTimespec(int64(d))
	for syscall.Nanosleep(&ts, &ts) == syscall.EINTR {
	}
}
