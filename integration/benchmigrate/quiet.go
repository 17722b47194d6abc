package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// Before each measurement the benchmark waits for the machine to go quiet:
// what the one before left running (Consul applying and reclaiming a
// delete of 100,000 keys, PostgreSQL's autovacuum after a reset, a garbage
// collection) is otherwise charged to whichever measurement comes next.
const (
	quietWindow = 250 * time.Millisecond // one reading of /proc/stat
	quietBusy   = 0.15                   // of all CPUs: quiet below it
	quietMax    = 20 * time.Second       // then measure anyway, and say so
)

// cpuTimes reads the first line of /proc/stat: busy and total jiffies of
// all CPUs (idle and iowait are not busy).
func cpuTimes() (busy, total uint64, err error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0, err
	}
	return parseCPULine(strings.SplitN(string(b), "\n", 2)[0])
}

func parseCPULine(line string) (busy, total uint64, err error) {
	f := strings.Fields(line)
	if len(f) < 5 || f[0] != "cpu" {
		return 0, 0, fmt.Errorf("/proc/stat: unexpected first line %q", line)
	}
	// user nice system idle iowait irq softirq steal (guest is in user).
	for i, s := range f[1:min(len(f), 9)] {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("/proc/stat: %q: %w", line, err)
		}
		total += v
		if i != 3 && i != 4 {
			busy += v
		}
	}
	return busy, total, nil
}

// waitQuiet returns once a quietWindow passed with less than quietBusy of
// the CPUs busy, or after quietMax; it logs what it waited for when that
// was long. Where /proc/stat cannot be read it does not wait.
func waitQuiet(what string) {
	start := time.Now()
	b0, t0, err := cpuTimes()
	for err == nil && time.Since(start) < quietMax {
		time.Sleep(quietWindow) // the measuring interval, not a stand-in for readiness
		var b1, t1 uint64
		if b1, t1, err = cpuTimes(); err != nil || t1 == t0 {
			break
		}
		if float64(b1-b0)/float64(t1-t0) < quietBusy {
			if d := time.Since(start); d > 2*quietWindow {
				logf("waited %v for the machine to go quiet before %s", d.Round(10*time.Millisecond), what)
			}
			return
		}
		b0, t0 = b1, t1
	}
	if err == nil {
		logf("the machine stayed busy for %v before %s: measuring anyway", quietMax, what)
	}
}
