// Command validatebench measures `deployhook validate` on a large generated
// cluster.conf against the closest public relative of Dconf, the NATS server
// config parser (github.com/nats-io/nats-server/v2/conf), in one run: both as
// whole processes, run alternately, and in process. It prints the medians,
// the ratio, and each target of issue 11 beside its measured value.
//
// It is a module of its own so that NATS is a dependency of this program
// only, never of deployhook. Run it with `make bench-validate`, or from this
// directory: go run . [-runs 15] [-lines 110000] [-markdown]
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/apcera/deployhook/validate"
	"github.com/apcera/deployhook/validate/dconf"
	"github.com/nats-io/nats-server/v2/conf"
)

// The targets of issue 11, item 3.
const (
	targetBytesPerByte = 3.0  // allocated by parse and validate, per input byte
	targetRSSFactor    = 4.0  // peak RSS at most this times the input ...
	targetRSSExtraMiB  = 15.0 // ... plus this
	targetVsNATS       = 3.0  // whole process, at least this much faster than NATS
)

func main() {
	runs := flag.Int("runs", 15, "whole-process runs of each program")
	lines := flag.Int("lines", 110000, "lines of the generated cluster.conf (110000: 2.8 MB)")
	root := flag.String("root", "../..", "the deployhook repository")
	markdown := flag.Bool("markdown", false, "also print the README's table")
	gen := flag.String("gen", "", "internal: write the generated file here and exit")
	inproc := flag.String("inprocess", "", "internal: measure this file in process, print JSON and exit")
	flag.Parse()
	var err error
	switch {
	case *gen != "":
		err = os.WriteFile(*gen, dconf.GenerateClusterConf(*lines), 0o644)
	case *inproc != "":
		err = inProcess(*inproc)
	default:
		err = run(*root, *lines, *runs, *markdown)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "validatebench:", err)
		os.Exit(1)
	}
}

// sample is one whole-process run.
type sample struct {
	wall, cpu time.Duration
	rssKiB    int64
}

func run(root string, lines, runs int, markdown bool) error {
	dir, err := os.MkdirTemp("", "validatebench")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	self, err := os.Executable()
	if err != nil {
		return err
	}
	dh, nats, file := filepath.Join(dir, "deployhook"), filepath.Join(dir, "natsparse"), filepath.Join(dir, "cluster.conf")
	// deployhook is built in its own module, with its own dependency
	// versions: the binary measured is the one `make build` makes.
	if err := command(root, "go", "build", "-o", dh, "./cmd/deployhook"); err != nil {
		return err
	}
	if err := command(".", "go", "build", "-o", nats, "./natsparse"); err != nil {
		return err
	}
	// The generator runs in a child, so that this process stays small:
	// the peak RSS the kernel reports for a child includes the peak of the
	// parent it was started from.
	if err := command(".", self, "-gen", file, "-lines", strconv.Itoa(lines)); err != nil {
		return err
	}
	st, err := os.Stat(file)
	if err != nil {
		return err
	}
	size := st.Size()

	out, err := exec.Command(dh, "validate", file).CombinedOutput()
	if err != nil {
		return fmt.Errorf("deployhook validate %s: %w\n%s", file, err, out)
	}
	summary := lastLine(out)
	if out, err := exec.Command(nats, file).CombinedOutput(); err != nil {
		return fmt.Errorf("natsparse %s: %w\n%s", file, err, out)
	}

	loadBefore := loadAvg()
	var dhs, ns []sample
	for i := range runs {
		// Alternate which goes first, so neither always runs on a
		// cache warmed by the other.
		a, b := exec.Command(dh, "validate", file), exec.Command(nats, file)
		first, second := &dhs, &ns
		if i%2 == 1 {
			a, b = b, a
			first, second = second, first
		}
		for _, c := range []struct {
			cmd *exec.Cmd
			to  *[]sample
		}{{a, first}, {b, second}} {
			s, err := measure(c.cmd)
			if err != nil {
				return err
			}
			*c.to = append(*c.to, s)
		}
	}
	parentKiB := vmHWM()
	load := loadBefore + " before, " + loadAvg() + " after"

	var ip inProc
	out, err = exec.Command(self, "-inprocess", file).Output()
	if err != nil {
		return fmt.Errorf("in-process measurement: %w", err)
	}
	if err := json.Unmarshal(out, &ip); err != nil {
		return fmt.Errorf("in-process measurement: %w", err)
	}

	report(os.Stdout, size, lines, runs, summary, load, dhs, ns, ip, parentKiB, markdown)
	return nil
}

func command(dir, name string, args ...string) error {
	c := exec.Command(name, args...)
	c.Dir = dir
	c.Stdout, c.Stderr = os.Stderr, os.Stderr
	if err := c.Run(); err != nil {
		return fmt.Errorf("%s %s: %w", name, strings.Join(args, " "), err)
	}
	return nil
}

// measure runs c to completion and returns its wall time, CPU time and
// peak RSS (ru_maxrss of wait4).
func measure(c *exec.Cmd) (sample, error) {
	c.Stdout, c.Stderr = io.Discard, io.Discard
	start := time.Now()
	if err := c.Run(); err != nil {
		return sample{}, fmt.Errorf("%s: %w", strings.Join(c.Args, " "), err)
	}
	wall := time.Since(start)
	ps := c.ProcessState
	ru, ok := ps.SysUsage().(*syscall.Rusage)
	if !ok {
		return sample{}, fmt.Errorf("%s: no rusage on this system", c.Path)
	}
	return sample{wall: wall, cpu: ps.UserTime() + ps.SystemTime(), rssKiB: ru.Maxrss}, nil
}

// loadAvg is the one-minute load average of the machine, or "?".
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(b)); err == nil && len(f) > 0 {
		return f[0]
	}
	return "?"
}

// vmHWM is this process's own peak RSS in KiB, which bounds what the kernel
// can fold into a child's ru_maxrss.
func vmHWM() int64 {
	b, _ := os.ReadFile("/proc/self/status")
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			n, _ := strconv.ParseInt(strings.Fields(v)[0], 10, 64)
			return n
		}
	}
	return 0
}

// inProc is what the -inprocess child measures.
type inProc struct {
	DHNanos, NATSNanos int64 // median CPU time of one parse (and validate)
	DHBytes, NATSBytes int64 // bytes allocated by one
}

// inProcess measures the CPU time (user and system, of all threads: the
// garbage collector's included; steadier than wall time on a busy machine)
// of validate.ClusterConf and conf.Parse on the file, and the bytes each
// allocates, median of 5 after one warm-up.
func inProcess(file string) error {
	src, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	text := string(src)
	var r inProc
	r.DHNanos, r.DHBytes, err = timeAlloc(func() error {
		if _, diags := validate.ClusterConf(src, file); diags.HasErrors() {
			return fmt.Errorf("validate %s: %s", file, diags.Error())
		}
		return nil
	})
	if err != nil {
		return err
	}
	r.NATSNanos, r.NATSBytes, err = timeAlloc(func() error {
		_, err := conf.Parse(text)
		return err
	})
	if err != nil {
		return err
	}
	return json.NewEncoder(os.Stdout).Encode(r)
}

func timeAlloc(f func() error) (nanos, bytes int64, err error) {
	if err := f(); err != nil {
		return 0, 0, err
	}
	var ts, bs []int64
	for range 5 {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		start := cpuTime()
		if err := f(); err != nil {
			return 0, 0, err
		}
		ts = append(ts, int64(cpuTime()-start))
		runtime.ReadMemStats(&after)
		bs = append(bs, int64(after.TotalAlloc-before.TotalAlloc))
	}
	return median(ts), median(bs), nil
}

// cpuTime is the user and system time this process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func median[T int64 | time.Duration](xs []T) T {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}

func pick[T any](xs []sample, f func(sample) T) []T {
	out := make([]T, len(xs))
	for i, x := range xs {
		out[i] = f(x)
	}
	return out
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d)/1e6) }
func mib(kib int64) float64     { return float64(kib) / 1024 }

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "MISSED"
}

func lastLine(b []byte) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return lines[len(lines)-1]
}

func report(w io.Writer, size int64, lines, runs int, summary, load string, dhs, ns []sample, ip inProc, parentKiB int64, markdown bool) {
	dWall, nWall := median(pick(dhs, func(s sample) time.Duration { return s.wall })), median(pick(ns, func(s sample) time.Duration { return s.wall }))
	dCPU, nCPU := median(pick(dhs, func(s sample) time.Duration { return s.cpu })), median(pick(ns, func(s sample) time.Duration { return s.cpu }))
	dRSS, nRSS := median(pick(dhs, func(s sample) int64 { return s.rssKiB })), median(pick(ns, func(s sample) int64 { return s.rssKiB }))
	dRSSMax := slices.Max(pick(dhs, func(s sample) int64 { return s.rssKiB }))
	ratios := make([]int64, len(dhs)) // per pair, in thousandths
	for i := range dhs {
		ratios[i] = int64(1000 * float64(ns[i].wall) / float64(dhs[i].wall))
	}
	vsNATS := float64(nWall) / float64(dWall)
	perByte := float64(ip.DHBytes) / float64(size)
	rssTarget := targetRSSFactor*float64(size)/(1<<20) + targetRSSExtraMiB

	fmt.Fprintf(w, "input: generated cluster.conf, %d lines, %d bytes (%.1f MB); deployhook validate says %q\n", lines, size, float64(size)/1e6, summary)
	fmt.Fprintf(w, "whole process, %d runs each, alternating, medians (load average %s; wall times grow with it, the ratios much less):\n", runs, load)
	fmt.Fprintf(w, "  %-30s %12s %12s %12s\n", "", "wall", "CPU", "peak RSS")
	fmt.Fprintf(w, "  %-30s %12s %12s %9.1f MiB\n", "deployhook validate", ms(dWall), ms(dCPU), mib(dRSS))
	fmt.Fprintf(w, "  %-30s %12s %12s %9.1f MiB\n", "NATS conf.ParseFile", ms(nWall), ms(nCPU), mib(nRSS))
	fmt.Fprintf(w, "in process, CPU time, median of 5:\n")
	fmt.Fprintf(w, "  %-30s %12s %9.1f MB allocated (%.2f bytes/input byte)\n", "validate.ClusterConf", ms(time.Duration(ip.DHNanos)), float64(ip.DHBytes)/1e6, perByte)
	fmt.Fprintf(w, "  %-30s %12s %9.1f MB allocated (%.2f bytes/input byte)\n", "NATS conf.Parse", ms(time.Duration(ip.NATSNanos)), float64(ip.NATSBytes)/1e6, float64(ip.NATSBytes)/float64(size))
	fmt.Fprintf(w, "targets (issue 11):\n")
	fmt.Fprintf(w, "  allocs: %.2f bytes/input byte (target <= %.0f): %s\n", perByte, targetBytesPerByte, verdict(perByte <= targetBytesPerByte))
	fmt.Fprintf(w, "  peak RSS: %.1f MiB, worst run %.1f MiB (target <= %.0fx input + %.0f MiB = %.1f MiB): %s\n",
		mib(dRSS), mib(dRSSMax), targetRSSFactor, targetRSSExtraMiB, rssTarget, verdict(mib(dRSSMax) <= rssTarget))
	fmt.Fprintf(w, "  whole process vs NATS: %.1fx faster by median wall time, %.1fx by median of per-pair ratios, %.1fx by CPU (target >= %.0fx): %s\n",
		vsNATS, float64(median(ratios))/1000, float64(nCPU)/float64(dCPU), targetVsNATS, verdict(vsNATS >= targetVsNATS))
	if parentKiB >= dRSS {
		fmt.Fprintf(w, "  note: this process peaked at %.1f MiB, which the kernel folds into a child's peak RSS: the RSS figures are upper bounds\n", mib(parentKiB))
	}
	if markdown {
		fmt.Fprintf(w, "\n| %d-line generated cluster.conf (%.1f MB), %d runs each | `deployhook validate` | NATS `conf.ParseFile` | ratio | target |\n", lines, float64(size)/1e6, runs)
		fmt.Fprintf(w, "| --- | ---: | ---: | ---: | --- |\n")
		fmt.Fprintf(w, "| whole process, median wall time | %s | %s | %.1f× faster | ≥ %.0f× |\n", ms(dWall), ms(nWall), vsNATS, targetVsNATS)
		fmt.Fprintf(w, "| whole process, median CPU time | %s | %s | %.1f× | |\n", ms(dCPU), ms(nCPU), float64(nCPU)/float64(dCPU))
		fmt.Fprintf(w, "| peak RSS (median, worst) | %.1f, %.1f MiB | %.1f MiB | | ≤ %.1f MiB |\n", mib(dRSS), mib(dRSSMax), mib(nRSS), rssTarget)
		fmt.Fprintf(w, "| in process: parse (+ validate), CPU time | %s | %s | %.1f× | |\n", ms(time.Duration(ip.DHNanos)), ms(time.Duration(ip.NATSNanos)), float64(ip.NATSNanos)/float64(ip.DHNanos))
		fmt.Fprintf(w, "| allocated per input byte | %.2f B | %.1f B | | ≤ %.0f B |\n", perByte, float64(ip.NATSBytes)/float64(size), targetBytesPerByte)
	}
}
