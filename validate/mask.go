package validate

import (
	"bytes"
	"regexp"
	"sort"
	"unicode/utf8"

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

// secretWords are the words of secretWord, for secretAt, and secretStart
// marks the bytes where secretAt may be true.
var (
	secretWords = []string{"password", "secret", "token", "private_key", "access_key"}
	secretStart = func() (t [256]bool) {
		for _, w := range secretWords {
			t[w[0]], t[w[0]-'a'+'A'] = true, true
		}
		for c := utf8.RuneSelf; c < 256; c++ {
			t[c] = true
		}
		return t
	}()
)

// isSecretKey reports whether values of key must be masked: whether
// secretWord matches it.
func isSecretKey(key []byte) bool {
	for i := range key {
		if key[i] >= utf8.RuneSelf {
			return secretWord.Match(key)
		}
	}
	for i := range key {
		if secretStart[key[i]] && secretAt(key, i) {
			return true
		}
	}
	return false
}

// secretAt reports whether secretWord may match at src[i]: one of its
// words starts there in any ASCII case, or src[i] is not ASCII, where the
// regexp's Unicode case folding (ſ for s, K for k) decides. A cheap test
// in front of the regexps, which are slow on a large file.
func secretAt(src []byte, i int) bool {
	c := src[i]
	if c >= utf8.RuneSelf {
		return true
	}
	if i+1 == len(src) {
		return false
	}
	c, d := c|0x20, src[i+1]|0x20
	for _, w := range secretWords {
		if w[0] == c && w[1] == d && len(src)-i >= len(w) && bytes.EqualFold(src[i:i+len(w)], []byte(w)) {
			return true
		}
	}
	return false
}

// masker finds the byte ranges of a source that must never be shown:
// values of secret keys (from the tree when there is one, and lexically in
// any case), URL passwords, and the bodies of PEM private keys. Only a few
// lines of a file are ever shown, so the lexical search, a set of regexps
// that is slow on a large file, runs line by line on demand; what may span
// lines is found up front.
type masker struct {
	src    []byte
	global []span // sorted and merged: the spans that may cross a line break, and the tree's
}

func newMasker(src []byte, f *dconf.File) *masker {
	var out []span
	if top := f.Top(); top.Ok() {
		out = treeSecrets(top, false, out)
	}
	// A lexical span crosses a line break only as a block string "(" or a
	// quoted string with a backslash before the newline: run the line
	// search up front on the lines that hold either.
	for _, sep := range []string{"(", "\\\n"} {
		for i := 0; i < len(src); {
			j := bytes.Index(src[i:], []byte(sep))
			if j < 0 {
				break
			}
			ls := bytes.LastIndexByte(src[:i+j], '\n') + 1
			le := lineEnd(src, i+j)
			out = lineSecrets(src, ls, le, out)
			i = le + 1
		}
	}
	for _, m := range pemBegin.FindAllIndex(src, -1) {
		start := m[1]
		end := len(src)
		if e := pemEnd.FindIndex(src[start:]); e != nil {
			end = start + e[0]
		}
		out = append(out, span{start, end})
	}
	return &masker{src: src, global: merge(out)}
}

// line returns the sorted, merged spans to mask on the line src[ls:le].
// Restricted to the line they are those of the whole file (secretSpans).
func (m *masker) line(ls, le int) []span {
	out := lineSecrets(m.src, ls, le, nil)
	i := sort.Search(len(m.global), func(i int) bool { return m.global[i].end >= ls })
	for ; i < len(m.global) && m.global[i].start <= le; i++ {
		out = append(out, m.global[i])
	}
	return merge(out)
}

// lineSecrets appends the lexical spans found on the line src[ls:le]: the
// values of secret keys and URL passwords. A match of secretKeyLex or
// urlPassword never spans a line break, so a line is searched on its own,
// and only when it may hold a match.
func lineSecrets(src []byte, ls, le int, out []span) []span {
	line := src[ls:le]
	for i := range line {
		if secretStart[line[i]] && secretAt(line, i) {
			for _, m := range secretKeyLex.FindAllIndex(line, -1) {
				if s, ok := lexValue(src, ls+m[1]); ok {
					out = append(out, s)
				}
			}
			break
		}
	}
	if bytes.Contains(line, []byte("://")) {
		for _, m := range urlPassword.FindAllSubmatchIndex(line, -1) {
			out = append(out, span{ls + m[2], ls + m[3]})
		}
	}
	return out
}

// secretSpans returns the sorted, merged byte ranges of src to mask, on
// every line.
func secretSpans(src []byte, f *dconf.File) []span {
	m := newMasker(src, f)
	out := append([]span(nil), m.global...)
	for ls := 0; ls < len(src); {
		le := lineEnd(src, ls)
		out = lineSecrets(src, ls, le, out)
		ls = le + 1
	}
	return merge(out)
}

// treeSecrets appends the spans of every scalar below v when secret is set
// (the value of a secret key), descending into maps and arrays.
func treeSecrets(v dconf.Node, secret bool, out []span) []span {
	switch v.Kind() {
	case dconf.Map:
		for e := v.First(); e.Ok(); e = e.Next() {
			out = treeSecrets(e, secret || isSecretKey(e.KeyBytes()), out)
		}
	case dconf.Array:
		for el := v.First(); el.Ok(); el = el.Next() {
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
func valueSpan(v dconf.Node) span {
	s, e := v.Offsets()
	switch {
	case v.Kind() == dconf.String && v.Quote() != dconf.Bare && e-s >= 2:
		return span{s + 1, e - 1}
	case v.Kind() == dconf.BlockString:
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

// lineEnd is the offset of the newline ending the line that holds i, or
// len(src).
func lineEnd(src []byte, i int) int {
	if j := bytes.IndexByte(src[i:], '\n'); j >= 0 {
		return i + j
	}
	return len(src)
}
