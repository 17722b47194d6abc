package runitlog

import (
	"errors"
	"math/rand/v2"
	"testing"
	"time"
)

func TestTAI64NVectors(t *testing.T) {
	tests := []struct {
		name string
		t    time.Time
		want string
	}{
		{"unix epoch", time.Unix(0, 0), "@400000000000000a00000000"},
		// A name the real svlogd gave a file it rotated.
		{"svlogd rotation", time.Unix(1795648161, 149021500), "@400000006b076aab08e1e33c"},
		{"last nanosecond", time.Unix(1, 999999999), "@400000000000000b3b9ac9ff"},
		{"before 1970", time.Unix(-11, 0), "@3fffffffffffffff00000000"},
		{"platform example", time.Date(2017, 7, 28, 19, 52, 44, 716518056, time.UTC), "@40000000597b96162ab532a8"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := TAI64N(tt.t); got != tt.want {
				t.Errorf("TAI64N(%v) = %s, want %s", tt.t, got, tt.want)
			}
			back, err := ParseTAI64N(tt.want)
			if err != nil {
				t.Fatal(err)
			}
			if !back.Equal(tt.t) || back.Location() != time.UTC {
				t.Errorf("ParseTAI64N(%s) = %v, want %v in UTC", tt.want, back, tt.t)
			}
		})
	}
}

func TestTAI64NRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 10000; i++ {
		in := time.Unix(r.Int64N(1<<40)-1<<39, r.Int64N(1e9))
		s := TAI64N(in)
		out, err := ParseTAI64N(s)
		if err != nil {
			t.Fatalf("ParseTAI64N(%s): %v", s, err)
		}
		if !out.Equal(in) {
			t.Fatalf("round trip of %v via %s gave %v", in, s, out)
		}
	}
}

func TestTAI64NSortsChronologically(t *testing.T) {
	base := time.Unix(1795648161, 999999999)
	prev := TAI64N(base)
	for _, d := range []time.Duration{1, time.Millisecond, time.Second, 365 * 24 * time.Hour} {
		next := TAI64N(base.Add(d))
		if next <= prev {
			t.Errorf("TAI64N(+%v) = %s does not sort after %s", d, next, prev)
		}
	}
}

func TestParseTAI64NForms(t *testing.T) {
	want := time.Unix(1795648161, 149021500)
	for _, s := range []string{"@400000006b076aab08e1e33c", "400000006b076aab08e1e33c", "@400000006B076AAB08E1E33C"} {
		got, err := ParseTAI64N(s)
		if err != nil || !got.Equal(want) {
			t.Errorf("ParseTAI64N(%q) = %v, %v; want %v", s, got, err, want)
		}
	}
}

func TestParseTAI64NErrors(t *testing.T) {
	tests := []struct{ name, in string }{
		{"empty", ""},
		{"short", "@400000006b076aab08e1e33"},
		{"file suffix", "@400000006b076aab08e1e33c.s"},
		{"not hex", "@400000006b076aab08e1e33g"},
		{"nanoseconds 1e9", "@400000006b076aab3b9aca00"},
		{"reserved label", "@800000000000000000000000"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseTAI64N(tt.in)
			if !errors.Is(err, ErrTAI64N) {
				t.Errorf("ParseTAI64N(%q) error = %v, want ErrTAI64N", tt.in, err)
			}
		})
	}
}
