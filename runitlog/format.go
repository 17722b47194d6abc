package runitlog

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/sirupsen/logrus"
)

// timeLayout is the layout of time.Time.String, without the monotonic clock
// reading String appends: "2017-07-28 19:52:44.716518056 +0000 UTC" (trailing
// zeros of the fraction dropped, as String drops them).
const timeLayout = "2006-01-02 15:04:05.999999999 -0700 MST"

// levels are logrus levels, upper case, padded to five characters.
var levels = [...]string{
	logrus.PanicLevel: "PANIC",
	logrus.FatalLevel: "FATAL",
	logrus.ErrorLevel: "ERROR",
	logrus.WarnLevel:  "WARN ",
	logrus.InfoLevel:  "INFO ",
	logrus.DebugLevel: "DEBUG",
	logrus.TraceLevel: "TRACE",
}

// Formatter writes the platform's log line:
//
//	2017-07-28 19:52:44.716518056 +0000 UTC [INFO  pid=10182 requestid='' source='migrator.go:236'] Migrated store2 -> store3 (took: 8.819773973s, records migrated: 281, records failed: 0)
//
// The source is the base name and line of the caller (set by the logger's
// ReportCaller), or empty. Fields of the entry are kept rather than dropped,
// since a dropped field is lost for good: they follow the message as
// " key=value", sorted by key, the value quoted (Go syntax) when it holds a
// space, a quote, "=" or a non-printable character, so a line stays one line
// and parses back. Trailing newlines of the message are removed; newlines
// inside it are kept.
type Formatter struct {
	// Pid is printed as pid=; 0 means os.Getpid() at each entry.
	Pid int
}

// Format implements logrus.Formatter.
func (f *Formatter) Format(e *logrus.Entry) ([]byte, error) {
	b := e.Buffer
	if b == nil {
		b = &bytes.Buffer{}
	}
	var scratch [64]byte
	b.Write(e.Time.UTC().AppendFormat(scratch[:0], timeLayout))
	b.WriteString(" [")
	b.WriteString(levelName(e.Level))
	b.WriteString(" pid=")
	pid := f.Pid
	if pid == 0 {
		pid = os.Getpid()
	}
	b.Write(strconv.AppendInt(scratch[:0], int64(pid), 10))
	b.WriteString(" requestid='' source='")
	if e.Caller != nil {
		b.WriteString(filepath.Base(e.Caller.File))
		b.WriteByte(':')
		b.Write(strconv.AppendInt(scratch[:0], int64(e.Caller.Line), 10))
	}
	b.WriteString("'] ")
	b.WriteString(strings.TrimRight(e.Message, "\n"))
	if len(e.Data) > 0 {
		writeFields(b, e.Data)
	}
	b.WriteByte('\n')
	return b.Bytes(), nil
}

func levelName(l logrus.Level) string {
	if int(l) < len(levels) {
		return levels[l]
	}
	return fmt.Sprintf("%-5.5s", strings.ToUpper(l.String()))
}

func writeFields(b *bytes.Buffer, data logrus.Fields) {
	keys := make([]string, 0, len(data))
	for k := range data {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		b.WriteByte(' ')
		b.WriteString(k)
		b.WriteByte('=')
		var s string
		switch v := data[k].(type) {
		case string:
			s = v
		case error:
			s = v.Error()
		default:
			s = fmt.Sprint(v)
		}
		if needsQuote(s) {
			b.WriteString(strconv.Quote(s))
		} else {
			b.WriteString(s)
		}
	}
}

func needsQuote(s string) bool {
	if s == "" {
		return true
	}
	for _, r := range s {
		if r == ' ' || r == '"' || r == '=' || !strconv.IsPrint(r) {
			return true
		}
	}
	return false
}

// NewLogger returns a logger that writes platform lines to w, with callers
// reported and level Info.
func NewLogger(w io.Writer) *logrus.Logger {
	l := logrus.New()
	l.SetOutput(w)
	l.SetFormatter(&Formatter{Pid: os.Getpid()})
	l.SetReportCaller(true)
	l.SetLevel(logrus.InfoLevel)
	return l
}
