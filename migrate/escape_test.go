package migrate

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"testing"
)

func TestEscapeSegment(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"jobs", "jobs"},
		{"job::/sandbox/admin::web", "job=3A=3A=2Fsandbox=2Fadmin=3A=3Aweb"},
		{"=", "=3D"},
		{"/", "=2F"},
		{":", "=3A"},
		{" ", "=20"},
		{"é", "=C3=A9"},
		{".", "=2E"},
		{"..", "=2E=2E"},
		{"...", "..."},
		{".a", ".a"},
		{"A-Z_a.z-09", "A-Z_a.z-09"},
		{"\x00\xff", "=00=FF"},
	} {
		got, err := EscapeSegment(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("EscapeSegment(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
		back, err := UnescapeSegment(got)
		if err != nil || back != tc.in {
			t.Errorf("UnescapeSegment(%q) = %q, %v; want %q", got, back, err, tc.in)
		}
	}
	if _, err := EscapeSegment(""); !errors.Is(err, ErrEmptySegment) {
		t.Errorf("EscapeSegment(\"\") error = %v, want ErrEmptySegment", err)
	}
}

func TestUnescapeRejectsNonCanonical(t *testing.T) {
	for _, in := range []string{"", ".", "..", "=41", "=3a", "=3", "=", "a=", "a/b", "a b", "=2E.", "x=2E", "=2E=2E=2E"[:7]} {
		if got, err := UnescapeSegment(in); err == nil {
			t.Errorf("UnescapeSegment(%q) = %q, want an error", in, got)
		}
	}
}

func TestStoreKey(t *testing.T) {
	const prefix = "apcera/store3/jmdb/"
	k, err := StoreKey(prefix, "jobs", "job::/sandbox/admin::web")
	if want := "apcera/store3/jmdb/jobs/job=3A=3A=2Fsandbox=2Fadmin=3A=3Aweb"; err != nil || k != want {
		t.Fatalf("StoreKey = %q, %v; want %q", k, err, want)
	}
	b, key, err := ParseStoreKey(prefix, k)
	if err != nil || b != "jobs" || key != "job::/sandbox/admin::web" {
		t.Fatalf("ParseStoreKey = %q, %q, %v", b, key, err)
	}
	for _, bad := range []string{"other/jobs/x", prefix + "jobs", prefix + "jobs/", prefix + "/x", prefix + "a/b/c", prefix + "a/=41"} {
		if _, _, err := ParseStoreKey(prefix, bad); err == nil {
			t.Errorf("ParseStoreKey(%q) succeeded", bad)
		}
	}
	if _, err := StoreKey(prefix, "jobs", ""); !errors.Is(err, ErrEmptySegment) {
		t.Errorf("StoreKey with an empty key: %v", err)
	}
	if _, err := StoreKey(prefix, "", "k"); !errors.Is(err, ErrEmptySegment) {
		t.Errorf("StoreKey with an empty bucket: %v", err)
	}
}

func TestEscapeNoAlloc(t *testing.T) {
	n := testing.AllocsPerRun(100, func() {
		if _, err := EscapeSegment("job-web_1.2"); err != nil {
			t.Fatal(err)
		}
	})
	if n != 0 {
		t.Errorf("EscapeSegment of a safe string allocates %v times", n)
	}
	n = testing.AllocsPerRun(100, func() { _, _ = EscapeSegment("job::web") })
	if n != 1 {
		t.Errorf("EscapeSegment of an unsafe string allocates %v times, want 1", n)
	}
}

func FuzzEscape(f *testing.F) {
	for _, s := range []string{"jobs", "job::/sandbox/admin::web", ".", "..", "=", "é", "\x00", "a b", "=2E"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		e, err := EscapeSegment(s)
		if s == "" {
			if err == nil {
				t.Fatal("empty segment escaped")
			}
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		if e == "" || e == "." || e == ".." {
			t.Fatalf("EscapeSegment(%q) = %q", s, e)
		}
		for i := 0; i < len(e); i++ {
			if !strings.ContainsRune(EscapedAlphabet, rune(e[i])) {
				t.Fatalf("EscapeSegment(%q) = %q: byte %q outside the alphabet", s, e, e[i])
			}
		}
		back, err := UnescapeSegment(e)
		if err != nil || back != s {
			t.Fatalf("round trip %q -> %q -> %q, %v", s, e, back, err)
		}
		// Whatever decodes must be the canonical escaping of its result.
		if d, err := UnescapeSegment(s); err == nil {
			if again, _ := EscapeSegment(d); again != s {
				t.Fatalf("UnescapeSegment(%q) = %q, which escapes to %q", s, d, again)
			}
		}
	})
}

// naiveEscape is the obvious way: fmt per byte into a string.
func naiveEscape(s string) string {
	var out string
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-' {
			out += string(c)
		} else {
			out += fmt.Sprintf("=%02X", c)
		}
	}
	return out
}

var benchKeys = []string{"job::/sandbox/admin::web", "package-1234567890abcdef", "route::http::example.com/", "policy_42"}

func BenchmarkEscape(b *testing.B) {
	b.Run("EscapeSegment", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			_, _ = EscapeSegment(benchKeys[i%len(benchKeys)])
		}
	})
	b.Run("naive-fmt", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			_ = naiveEscape(benchKeys[i%len(benchKeys)])
		}
	})
	b.Run("url.PathEscape", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			_ = strings.ReplaceAll(url.PathEscape(benchKeys[i%len(benchKeys)]), "%", "=")
		}
	})
}
