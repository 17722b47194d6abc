package validate

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/apcera/deployhook/validate/dconf"
	"github.com/hashicorp/hcl/v2"
)

// tabWidth is how many spaces a TAB of a source line shows as, in the line
// and under it alike.
const tabWidth = 4

// Printer renders diagnostics with snippets of the files added to it.
// Snippets never show secrets (see masker).
type Printer struct {
	Color bool // ANSI colour; only for a terminal with NO_COLOR unset

	files map[string]*source
	order []string
}

type source struct {
	name  string
	src   []byte
	file  *dconf.File
	masks *masker
	done  bool
}

// NewPrinter returns a Printer without files.
func NewPrinter(color bool) *Printer {
	return &Printer{Color: color, files: map[string]*source{}}
}

// Add registers a file (its name as used in ranges, its bytes, and its tree
// or nil) for snippets and for the closing summary.
func (p *Printer) Add(name string, src []byte, f *dconf.File) {
	if _, ok := p.files[name]; !ok {
		p.order = append(p.order, name)
	}
	p.files[name] = &source{name: name, src: src, file: f}
}

// ANSI styles.
const (
	ansiReset  = "\x1b[0m"
	ansiBold   = "\x1b[1m"
	ansiRed    = "\x1b[1;31m"
	ansiYellow = "\x1b[1;33m"
	ansiBlue   = "\x1b[1;34m"
)

func (p *Printer) style(s, code string) string {
	if !p.Color || s == "" {
		return s
	}
	return code + s + ansiReset
}

// WriteText writes diags (sorted, see Sort) in the rustc-like text form,
// then one summary line per file in the order the files were added:
//
//	cluster.conf:12:35: error[store2-with-migrate]: migrate_store2_to_store3 = true needs kind = store3
//	   12 |       "migrate_store2_to_store3": true
//	      |                                   ^^^^
//	   11 |       "kind": store2
//	      |               ------ kind is store2 here
//	   = set "kind": store3 to migrate, ...
//
//	cluster.conf: 1 error, 0 warnings
func (p *Printer) WriteText(w io.Writer, diags hcl.Diagnostics) error {
	ds := append(hcl.Diagnostics(nil), diags...)
	Sort(ds)
	var b bytes.Buffer
	for _, d := range ds {
		p.writeDiag(&b, d)
	}
	p.writeSummary(&b, ds)
	_, err := w.Write(b.Bytes())
	return err
}

func (p *Printer) writeDiag(b *bytes.Buffer, d *hcl.Diagnostic) {
	sev, col := "error", ansiRed
	if d.Severity == hcl.DiagWarning {
		sev, col = "warning", ansiYellow
	}
	if code := dconf.CodeOf(d); code != "" {
		sev += "[" + code + "]"
	}
	if d.Subject != nil {
		fmt.Fprintf(b, "%s: ", p.style(posString(*d.Subject), ansiBold))
	}
	if d.Subject != nil && d.Subject.Start.Line == 0 { // the whole file
		d = &hcl.Diagnostic{Severity: d.Severity, Summary: d.Summary, Detail: d.Detail, Extra: d.Extra}
	}
	fmt.Fprintf(b, "%s: %s\n", p.style(sev, col), p.style(scrub(d.Summary), ansiBold))

	var snips []snippet
	if d.Subject != nil {
		snips = append(snips, snippet{rng: *d.Subject, mark: '^', style: col})
	}
	var notes []dconf.Related
	for _, r := range RelatedOf(d) {
		if d.Subject != nil && r.Range.Filename == d.Subject.Filename && p.files[r.Range.Filename] != nil {
			snips = append(snips, snippet{rng: r.Range, mark: '-', style: ansiBlue, label: r.Message})
		} else {
			notes = append(notes, r)
		}
	}
	width := 3
	for _, s := range snips {
		width = max(width, len(strconv.Itoa(s.rng.Start.Line)))
	}
	for _, s := range snips {
		p.writeSnippet(b, s, width)
	}
	for _, r := range notes {
		fmt.Fprintf(b, "  %s %s: %s\n", p.style("note:", ansiBlue), posString(r.Range), scrub(r.Message))
	}
	if d.Detail != "" {
		for i, line := range strings.Split(scrub(d.Detail), "\n") {
			lead := strings.Repeat(" ", width+3)
			if i == 0 {
				lead = strings.Repeat(" ", width+1) + p.style("=", ansiBlue) + " "
			}
			fmt.Fprintf(b, "%s%s\n", lead, line)
		}
	}
	b.WriteByte('\n')
}

func posString(r hcl.Range) string {
	if r.Start.Line == 0 {
		return r.Filename
	}
	return fmt.Sprintf("%s:%d:%d", r.Filename, r.Start.Line, r.Start.Column)
}

type snippet struct {
	rng   hcl.Range
	mark  byte // '^' primary, '-' related
	style string
	label string
}

// writeSnippet writes the first line of s.rng and an underline of the range
// on that line (to its end for a range that continues on later lines).
func (p *Printer) writeSnippet(b *bytes.Buffer, s snippet, width int) {
	src := p.files[s.rng.Filename]
	if src == nil || s.rng.Start.Byte > len(src.src) {
		return
	}
	src.prepare()
	ln, at := s.rng.Start.Line, s.rng.Start.Byte
	if ln < 1 || at < 0 {
		return
	}
	// The line that holds the range's first byte: no table of lines,
	// which for a large file costs more than the few snippets shown.
	ls := bytes.LastIndexByte(src.src[:at], '\n') + 1
	le := len(src.src)
	if j := bytes.IndexByte(src.src[at:], '\n'); j >= 0 {
		le = at + j // the '\n'
	}
	if le > ls && src.src[le-1] == '\r' {
		le--
	}
	text, colAt := displayLine(src.src, ls, le, src.masks.line(ls, le))
	start := min(max(s.rng.Start.Byte, ls), le)
	end := min(max(s.rng.End.Byte, start), le)
	c0, c1 := colAt(start, false), colAt(end, true)
	n := max(c1-c0, 1)

	gutter := p.style(fmt.Sprintf("  %*d |", width, ln), ansiBlue)
	blank := p.style(fmt.Sprintf("  %*s |", width, ""), ansiBlue)
	if text == "" {
		fmt.Fprintf(b, "%s\n", gutter)
	} else {
		fmt.Fprintf(b, "%s %s\n", gutter, text)
	}
	under := p.style(strings.Repeat(string(s.mark), n), s.style)
	if s.label != "" {
		under += " " + p.style(scrub(s.label), s.style)
	}
	fmt.Fprintf(b, "%s %s%s\n", blank, strings.Repeat(" ", c0), under)
}

// prepare finds the secrets that span lines, once.
func (s *source) prepare() {
	if s.done {
		return
	}
	s.done = true
	s.masks = newMasker(s.src, s.file)
}

// displayLine renders src[ls:le] for a snippet: tabs expanded to tabWidth
// spaces, control characters as '?', masked spans as "****". colAt maps a
// byte offset in the line to its display column; an offset inside a masked
// span maps to the span's start, or to its end when atEnd is set.
func displayLine(src []byte, ls, le int, masks []span) (string, func(off int, atEnd bool) int) {
	var b strings.Builder
	cols := make([]int, le-ls+1)
	var inMask []span
	col := 0
	i := ls
	for i < le {
		if m, ok := maskAt(masks, i); ok {
			mend := min(m.end, le)
			for k := i; k < mend; k++ {
				cols[k-ls] = col
			}
			inMask = append(inMask, span{i, mend})
			b.WriteString("****")
			col += 4
			i = mend
			continue
		}
		cols[i-ls] = col
		r, size := utf8.DecodeRune(src[i:le])
		switch {
		case r == '\t':
			b.WriteString(strings.Repeat(" ", tabWidth))
			col += tabWidth
		case r < 0x20 || r == 0x7f || (r == utf8.RuneError && size == 1):
			b.WriteByte('?')
			col++
		default:
			b.WriteRune(r)
			col++
		}
		for k := i + 1; k < i+size; k++ {
			cols[k-ls] = cols[i-ls]
		}
		i += size
	}
	cols[le-ls] = col
	return b.String(), func(off int, atEnd bool) int {
		if atEnd {
			for _, m := range inMask {
				if off > m.start && off < m.end {
					return cols[m.end-ls]
				}
			}
		}
		return cols[off-ls]
	}
}

// maskAt returns the masked span covering byte i, if any.
func maskAt(masks []span, i int) (span, bool) {
	lo, hi := 0, len(masks)
	for lo < hi {
		m := (lo + hi) / 2
		switch {
		case masks[m].end <= i:
			lo = m + 1
		case masks[m].start > i:
			hi = m
		default:
			return masks[m], true
		}
	}
	return span{}, false
}

// writeSummary writes "name: N errors, M warnings" for every file added, and
// for any other file the diagnostics name.
func (p *Printer) writeSummary(b *bytes.Buffer, ds hcl.Diagnostics) {
	type count struct{ errs, warns int }
	counts := map[string]*count{}
	names := append([]string(nil), p.order...)
	for _, n := range names {
		counts[n] = &count{}
	}
	for _, d := range ds {
		name := "deployhook"
		if d.Subject != nil {
			name = d.Subject.Filename
		}
		c := counts[name]
		if c == nil {
			c = &count{}
			counts[name] = c
			names = append(names, name)
		}
		if d.Severity == hcl.DiagError {
			c.errs++
		} else {
			c.warns++
		}
	}
	for _, n := range names {
		c := counts[n]
		fmt.Fprintf(b, "%s: %s, %s\n", n, plural(c.errs, "error"), plural(c.warns, "warning"))
	}
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}

// JSONPos is a position in the JSON output: 1-based line and column
// (Unicode code points), 0-based byte offset.
type JSONPos struct {
	Line   int `json:"line"`
	Column int `json:"column"`
	Byte   int `json:"byte"`
}

// JSONRelated is a secondary location in the JSON output.
type JSONRelated struct {
	Message string  `json:"message"`
	File    string  `json:"file"`
	Start   JSONPos `json:"start"`
	End     JSONPos `json:"end"`
}

// JSONDiagnostic is one element of the JSON output. Start and End are null
// for a diagnostic without a place in a file (File is then the file the
// diagnostic is about, or "" for one about the command line). No source text is included.
type JSONDiagnostic struct {
	Severity string        `json:"severity"` // "error" or "warning"
	Code     string        `json:"code"`
	Summary  string        `json:"summary"`
	Detail   string        `json:"detail"`
	File     string        `json:"file"`
	Start    *JSONPos      `json:"start"`
	End      *JSONPos      `json:"end"`
	Related  []JSONRelated `json:"related,omitempty"`
}

// WriteJSON writes diags, sorted, as an indented JSON array ("[]" when empty).
func WriteJSON(w io.Writer, diags hcl.Diagnostics) error {
	ds := append(hcl.Diagnostics(nil), diags...)
	Sort(ds)
	out := make([]JSONDiagnostic, 0, len(ds))
	for _, d := range ds {
		j := JSONDiagnostic{
			Severity: "error",
			Code:     dconf.CodeOf(d),
			Summary:  scrub(d.Summary),
			Detail:   scrub(d.Detail),
		}
		if d.Severity == hcl.DiagWarning {
			j.Severity = "warning"
		}
		if s := d.Subject; s != nil {
			j.File = s.Filename
			if s.Start.Line > 0 {
				j.Start, j.End = jsonPos(s.Start), jsonPos(s.End)
			}
		}
		for _, r := range RelatedOf(d) {
			j.Related = append(j.Related, JSONRelated{Message: scrub(r.Message), File: r.Range.Filename,
				Start: *jsonPos(r.Range.Start), End: *jsonPos(r.Range.End)})
		}
		out = append(out, j)
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(out)
}

func jsonPos(p hcl.Pos) *JSONPos { return &JSONPos{Line: p.Line, Column: p.Column, Byte: p.Byte} }
