package simpower

import (
	"fmt"
	"strconv"
	"time"
)

// Fault requests ride on the power socket: the soak (harness/soak) already knows a simulated
// target's socket from its bench entry, so fault injection needs no second channel.
//
//	fault noise <byte error rate>                   each byte the device sends is changed with this probability
//	fault cut <phase> <at byte> <restore ms>        one power cut at a byte of phase, power back after restore ms (0: stays off)
//	fault clear                                     no noise, no armed cut
//	fault reenumerate                               the USB-serial adapter comes back under a new device node
//	-> "ok on" | "ok off" | "err <message>"
//
// Phases: "upload" (certificate bytes the device receives), "commit" (bytes of the certificate
// write), "flash" (firmware bytes the boot ROM receives), "any" (every byte the device receives).

// Fault kinds.
const (
	FaultNoise = "noise"
	FaultCut   = "cut"
	FaultClear = "clear"
	// FaultReenumerate: the port the harness has open is hung up and the device's stable port
	// name moves to a new pseudo-terminal.
	FaultReenumerate = "reenumerate"
)

// Cut phases.
const (
	PhaseUpload = "upload"
	PhaseCommit = "commit"
	PhaseFlash  = "flash"
	PhaseAny    = "any"
)

// Fault is one parsed fault request.
type Fault struct {
	Kind    string
	Rate    float64       // noise
	Phase   string        // cut
	AtByte  int           // cut
	Restore time.Duration // cut
}

// Injector is a Switch that also takes fault requests; a simulator that is not one answers
// "err" to them.
type Injector interface {
	InjectFault(f Fault) error
}

// ParseFault reads the words after "fault".
func ParseFault(args []string) (Fault, error) {
	if len(args) == 0 {
		return Fault{}, fmt.Errorf("fault: want noise RATE, cut PHASE BYTE RESTORE_MS, reenumerate or clear")
	}
	f := Fault{Kind: args[0]}
	switch f.Kind {
	case FaultClear, FaultReenumerate:
		if len(args) != 1 {
			return f, fmt.Errorf("fault %s takes no arguments", f.Kind)
		}
	case FaultNoise:
		if len(args) != 2 {
			return f, fmt.Errorf("fault noise: want one byte error rate")
		}
		r, err := strconv.ParseFloat(args[1], 64)
		if err != nil || r < 0 || r > 1 {
			return f, fmt.Errorf("fault noise: rate %q is not a number from 0 to 1", args[1])
		}
		f.Rate = r
	case FaultCut:
		if len(args) != 4 {
			return f, fmt.Errorf("fault cut: want PHASE BYTE RESTORE_MS")
		}
		switch args[1] {
		case PhaseUpload, PhaseCommit, PhaseFlash, PhaseAny:
		default:
			return f, fmt.Errorf("fault cut: unknown phase %q (want upload, commit, flash or any)", args[1])
		}
		f.Phase = args[1]
		n, err := strconv.Atoi(args[2])
		if err != nil || n < 0 {
			return f, fmt.Errorf("fault cut: byte %q is not a count from 0", args[2])
		}
		f.AtByte = n
		ms, err := strconv.Atoi(args[3])
		if err != nil || ms < 0 || time.Duration(ms)*time.Millisecond > MaxCycleOff {
			return f, fmt.Errorf("fault cut: restore %q is not 0..%d milliseconds", args[3], MaxCycleOff.Milliseconds())
		}
		f.Restore = time.Duration(ms) * time.Millisecond
	default:
		return f, fmt.Errorf("fault: unknown kind %q (want noise, cut, reenumerate or clear)", f.Kind)
	}
	return f, nil
}

// String is the request line for f (without the trailing newline).
func (f Fault) String() string {
	switch f.Kind {
	case FaultNoise:
		return "fault noise " + strconv.FormatFloat(f.Rate, 'g', -1, 64)
	case FaultCut:
		return fmt.Sprintf("fault cut %s %d %d", f.Phase, f.AtByte, f.Restore.Milliseconds())
	}
	return "fault " + f.Kind
}

func (s *Server) fault(args []string) error {
	inj, ok := s.sw.(Injector)
	if !ok {
		return fmt.Errorf("this simulator takes no fault requests")
	}
	f, err := ParseFault(args)
	if err != nil {
		return err
	}
	return inj.InjectFault(f)
}
