package runitlog

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
)

func TestFormatPlatformLine(t *testing.T) {
	e := &logrus.Entry{
		Time:    time.Date(2017, 7, 28, 19, 52, 44, 716518056, time.UTC),
		Level:   logrus.InfoLevel,
		Message: "Migrated store2 -> store3 (took: 8.819773973s, records migrated: 281, records failed: 0)",
		Caller:  &runtime.Frame{File: "/src/github.com/apcera/deployhook/migrate/migrator.go", Line: 236},
	}
	got, err := (&Formatter{Pid: 10182}).Format(e)
	if err != nil {
		t.Fatal(err)
	}
	want := "2017-07-28 19:52:44.716518056 +0000 UTC [INFO  pid=10182 requestid='' source='migrator.go:236'] Migrated store2 -> store3 (took: 8.819773973s, records migrated: 281, records failed: 0)\n"
	if string(got) != want {
		t.Errorf("Format =\n%q\nwant\n%q", got, want)
	}
}

func TestFormatTime(t *testing.T) {
	est := time.FixedZone("EST", -5*3600)
	tests := []struct {
		name string
		t    time.Time
	}{
		{"monotonic reading", time.Now()},
		{"other zone", time.Date(2017, 7, 28, 14, 52, 44, 716518056, est)},
		{"trailing zeros", time.Date(2017, 7, 28, 19, 52, 44, 716500000, time.UTC)},
		{"whole second", time.Date(2017, 7, 28, 19, 52, 44, 0, time.UTC)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := (&Formatter{Pid: 1}).Format(&logrus.Entry{Time: tt.t, Level: logrus.InfoLevel, Message: "m"})
			if err != nil {
				t.Fatal(err)
			}
			want := tt.t.UTC().Round(0).String() + " [INFO  pid=1 requestid='' source=''] m\n"
			if string(got) != want {
				t.Errorf("Format =\n%q\nwant\n%q", got, want)
			}
			if strings.Contains(string(got), "m=") {
				t.Errorf("monotonic clock reading in %q", got)
			}
		})
	}
}

func TestFormatLevels(t *testing.T) {
	want := map[logrus.Level]string{
		logrus.PanicLevel: "[PANIC pid",
		logrus.FatalLevel: "[FATAL pid",
		logrus.ErrorLevel: "[ERROR pid",
		logrus.WarnLevel:  "[WARN  pid",
		logrus.InfoLevel:  "[INFO  pid",
		logrus.DebugLevel: "[DEBUG pid",
		logrus.TraceLevel: "[TRACE pid",
	}
	for level, w := range want {
		got, _ := (&Formatter{Pid: 7}).Format(&logrus.Entry{Level: level, Message: "m"})
		if !strings.Contains(string(got), w) {
			t.Errorf("level %v: %q does not contain %q", level, got, w)
		}
	}
}

func TestFormatFields(t *testing.T) {
	e := &logrus.Entry{
		Time:    time.Date(2017, 7, 28, 19, 52, 44, 1, time.UTC),
		Level:   logrus.WarnLevel,
		Message: "retrying\n",
		Data: logrus.Fields{
			"component": "job_manager",
			"attempt":   3,
			"error":     errors.New("connection refused"),
			"key":       "a=b",
			"empty":     "",
		},
	}
	got, _ := (&Formatter{Pid: 1}).Format(e)
	want := `2017-07-28 19:52:44.000000001 +0000 UTC [WARN  pid=1 requestid='' source=''] retrying attempt=3 component=job_manager empty="" error="connection refused" key="a=b"` + "\n"
	if string(got) != want {
		t.Errorf("Format =\n%q\nwant\n%q", got, want)
	}
}

// infoLogger is how libraries see the logger: a small interface that
// *logrus.Entry satisfies.
type infoLogger interface {
	Infof(format string, args ...any)
}

func TestNewLoggerSource(t *testing.T) {
	var buf bytes.Buffer
	logger := NewLogger(&buf)
	if logger.GetLevel() != logrus.InfoLevel || !logger.ReportCaller {
		t.Fatalf("level %v, ReportCaller %v; want info, true", logger.GetLevel(), logger.ReportCaller)
	}
	var l infoLogger = logrus.NewEntry(logger)
	_, file, line, _ := runtime.Caller(0)
	l.Infof("Migrated store2 -> store3 (took: %v, records migrated: %d, records failed: %d)", 8819773973*time.Nanosecond, 281, 0)
	logger.Debugf("not at info")

	re := regexp.MustCompile(`^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d{1,9})? \+0000 UTC) \[INFO  pid=(\d+) requestid='' source='([^']*)'\] (.*)\n$`)
	m := re.FindStringSubmatch(buf.String())
	if m == nil {
		t.Fatalf("output %q is not one platform line", buf.String())
	}
	if _, err := time.Parse(timeLayout, m[1]); err != nil {
		t.Errorf("time %q: %v", m[1], err)
	}
	if pid, _ := strconv.Atoi(m[2]); pid != os.Getpid() {
		t.Errorf("pid=%s, want %d", m[2], os.Getpid())
	}
	wantSource := filepath.Base(file) + ":" + strconv.Itoa(line+1)
	if m[3] != wantSource {
		t.Errorf("source=%q, want %q", m[3], wantSource)
	}
	if want := "Migrated store2 -> store3 (took: 8.819773973s, records migrated: 281, records failed: 0)"; m[4] != want {
		t.Errorf("message %q, want %q", m[4], want)
	}
}
