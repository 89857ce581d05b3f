//go:build !linux

package usb

import "time"

const preciseSleepMax = 0

func preciseSleep(d time.Duration) { time.Sleep(d) }
