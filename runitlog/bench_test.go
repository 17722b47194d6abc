package runitlog

import (
	"bytes"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
)

// benchEntry is a typical migration log entry.
func benchEntry() *logrus.Entry {
	l := logrus.New()
	l.SetReportCaller(true)
	return &logrus.Entry{
		Logger:  l,
		Time:    time.Date(2017, 7, 28, 19, 52, 44, 716518056, time.UTC),
		Level:   logrus.InfoLevel,
		Message: "Migrated store2 -> store3 (took: 8.819773973s, records migrated: 281, records failed: 0)",
		Caller:  &runtime.Frame{File: "/src/deployhook/migrate/migrator.go", Line: 236, Function: "migrate.(*Migrator).Run"},
	}
}

func benchLine(b *testing.B) []byte {
	line, err := (&Formatter{Pid: 10182}).Format(benchEntry())
	if err != nil {
		b.Fatal(err)
	}
	return line
}

// BenchmarkWrite compares Dir, at the default size limit (so it rotates,
// with its fsyncs, every few thousand lines), with a plain append-only file.
func BenchmarkWrite(b *testing.B) {
	line := benchLine(b)
	for _, bd := range []struct {
		name    string
		maxSize int64
	}{
		{"runitlog.Dir", 0},
		{"runitlog.Dir-norotate", -1}, // the cost of the fsyncs, by difference
	} {
		b.Run(bd.name, func(b *testing.B) {
			d, err := Open(b.TempDir(), Options{MaxSize: bd.maxSize})
			if err != nil {
				b.Fatal(err)
			}
			defer d.Close()
			b.SetBytes(int64(len(line)))
			for b.Loop() {
				if _, err := d.Write(line); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "lines/s")
		})
	}
	b.Run("os.File", func(b *testing.B) {
		f, err := os.OpenFile(filepath.Join(b.TempDir(), "plain"), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
		if err != nil {
			b.Fatal(err)
		}
		defer f.Close()
		b.SetBytes(int64(len(line)))
		for b.Loop() {
			if _, err := f.Write(line); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "lines/s")
	})
}

// BenchmarkFormat compares the platform formatter with logrus's own text
// formatter on the same entry, both writing into a reused buffer as logrus
// does.
func BenchmarkFormat(b *testing.B) {
	formatters := []struct {
		name string
		f    logrus.Formatter
	}{
		{"runitlog.Formatter", &Formatter{Pid: 10182}},
		{"logrus.TextFormatter", &logrus.TextFormatter{DisableColors: true, FullTimestamp: true}},
	}
	for _, bf := range formatters {
		b.Run(bf.name, func(b *testing.B) {
			e := benchEntry()
			var buf bytes.Buffer
			b.ReportAllocs()
			for b.Loop() {
				buf.Reset()
				e.Buffer = &buf
				if _, err := bf.f.Format(e); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
