package validate

import (
	"bytes"
	"regexp"
	"sort"

	"github.com/apcera/deployhook/validate/dconf"
)

// span is a half-open byte range of a source that must never be shown.
type span struct{ start, end int }

var (
	secretWord = regexp.MustCompile(`(?i)password|secret|token|private_key|access_key`)
	// secretKeyLex finds a secret key written at the start of a line or after
	// "{", "," or ";", with its separator: the fallback when the tree is
	// missing or broken by a syntax error.
	secretKeyLex = regexp.MustCompile(`(?im)(?:^[ \t]*|[{,;][ \t]*)["']?[\w.$/-]*(?:password|secret|token|private_key|access_key)[\w.$/-]*["']?(?:[ \t]*[:=][ \t]*|[ \t]+)`)
	// urlPassword finds the password of scheme://user:password@host.
	urlPassword = regexp.MustCompile(`[A-Za-z][A-Za-z0-9+.\-]*://[^/\s:@"'#]*:([^@\s/"'#]+)@`)
	pemBegin    = regexp.MustCompile(`-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----`)
	pemEnd      = regexp.MustCompile(`-----END [A-Z0-9 ]*PRIVATE KEY-----`)
)

// isSecretKey reports whether values of key must be masked.
func isSecretKey(key string) bool { return secretWord.MatchString(key) }

// secretSpans returns the sorted, merged byte ranges of src to mask: values
// of secret keys (from the tree when there is one, and lexically in any
// case), URL passwords, and the bodies of PEM private keys.
func secretSpans(src []byte, f *dconf.File) []span {
	var out []span
	if f != nil && f.Root != nil {
		out = treeSecrets(f.Root, false, out)
	}
	for _, m := range secretKeyLex.FindAllIndex(src, -1) {
		if s, ok := lexValue(src, m[1]); ok {
			out = append(out, s)
		}
	}
	for _, m := range urlPassword.FindAllSubmatchIndex(src, -1) {
		out = append(out, span{m[2], m[3]})
	}
	for _, m := range pemBegin.FindAllIndex(src, -1) {
		start := m[1]
		end := len(src)
		if e := pemEnd.FindIndex(src[start:]); e != nil {
			end = start + e[0]
		}
		out = append(out, span{start, end})
	}
	return merge(out)
}

// treeSecrets appends the spans of every scalar below v when secret is set
// (the value of a secret key), descending into maps and arrays.
func treeSecrets(v *dconf.Value, secret bool, out []span) []span {
	switch v.Kind {
	case dconf.Map:
		for _, e := range v.Entries {
			out = treeSecrets(e.Value, secret || isSecretKey(e.Key), out)
		}
	case dconf.Array:
		for _, el := range v.Elems {
			out = treeSecrets(el, secret, out)
		}
	default:
		if secret {
			out = append(out, valueSpan(v))
		}
	}
	return out
}

// valueSpan is the part of a scalar to hide: inside the quotes of a quoted
// string, after the "(" of a block string up to its closing line, or all.
func valueSpan(v *dconf.Value) span {
	s, e := v.Range.Start.Byte, v.Range.End.Byte
	switch {
	case v.Kind == dconf.String && v.Quote != dconf.Bare && e-s >= 2:
		return span{s + 1, e - 1}
	case v.Kind == dconf.BlockString:
		return span{s + 1, max(s+1, e-1)} // the closing ")" stays visible
	}
	return span{s, e}
}

// lexValue finds the value starting at i (after a secret key and its
// separator) without a tree.
func lexValue(src []byte, i int) (span, bool) {
	if i >= len(src) {
		return span{}, false
	}
	switch c := src[i]; c {
	case '"', '\'':
		j := i + 1
		for j < len(src) && src[j] != c && src[j] != '\n' {
			if c == '"' && src[j] == '\\' {
				j++
			}
			j++
		}
		return span{i + 1, min(j, len(src))}, true
	case '(':
		end := len(src)
		if k := bytes.Index(src[i:], []byte("\n)")); k >= 0 {
			end = i + k
		}
		return span{i + 1, end}, true
	case '{', '[', '\n', '\r', '#', ',', ';', '}', ']':
		return span{}, false
	}
	j := i
	for j < len(src) && bytes.IndexByte([]byte(" \t\r\n,;#}]"), src[j]) < 0 {
		j++
	}
	return span{i, j}, j > i
}

func merge(ss []span) []span {
	sort.Slice(ss, func(i, j int) bool { return ss[i].start < ss[j].start })
	var out []span
	for _, s := range ss {
		if s.end <= s.start {
			continue
		}
		if n := len(out); n > 0 && s.start <= out[n-1].end {
			out[n-1].end = max(out[n-1].end, s.end)
			continue
		}
		out = append(out, s)
	}
	return out
}

// scrub masks URL passwords in a message, a last defence for summaries that
// quote source text (the parser's, for instance).
func scrub(s string) string {
	return urlPassword.ReplaceAllStringFunc(s, func(m string) string {
		sub := urlPassword.FindStringSubmatchIndex(m)
		return m[:sub[2]] + "****" + m[sub[3]:]
	})
}
