package issue

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// DefaultReservationLease is how long another host's unfinished reservation is left alone
// before this station may take it over: a reservation is signed and recorded in milliseconds,
// so one this old belongs to a station that died.
const DefaultReservationLease = 2 * time.Minute

// processHolder names this process in the ledger: host, pid and the process's start time (so a
// recycled pid is not taken for the process that made a reservation).
var processHolder = sync.OnceValue(func() string {
	host, _ := os.Hostname()
	pid := os.Getpid()
	return fmt.Sprintf("%s:%d:%s", host, pid, processStart(pid))
})

// processStart is the start time of a process in clock ticks since boot (/proc/PID/stat field
// 22), "" when it is not running or unknown.
func processStart(pid int) string {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return ""
	}
	// The command name (field 2) is in parentheses and may hold spaces: count after its end.
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return ""
	}
	fields := strings.Fields(s[i+1:])
	if len(fields) < 20 {
		return ""
	}
	return fields[19] // field 22 overall
}

// holderGone says whether the process that holds a reservation made at reservedAt can no longer
// finish it: on this host, when that process is no longer running; elsewhere, once the lease ran
// out. A reservation without a holder (imported, or from an earlier release) is gone.
func holderGone(holder string, reservedAt time.Time, lease time.Duration, now time.Time) bool {
	if holder == "" {
		return true
	}
	parts := strings.Split(holder, ":")
	host, _ := os.Hostname()
	if len(parts) == 3 && parts[0] == host {
		pid, err := strconv.Atoi(parts[1])
		if err != nil {
			return true
		}
		start := processStart(pid)
		return start == "" || start != parts[2]
	}
	return now.Sub(reservedAt) > lease
}
