package dconf

// Diagnostic codes of the parser. They are stable: docs, golden files and the
// validator refer to them, so rename none of them.
//
// Errors:
//
//	unterminated-string    a quoted string or key is not closed on its line
//	raw-newline-in-string  a quoted string runs over a line break (use a block string)
//	unterminated-block     a block string "(" has no ")" alone at the start of a later line
//	unterminated-map       a "{" is never closed (end of file, or a "]" closes an outer array first)
//	unterminated-array     a "[" is never closed (end of file, or a "}" closes an outer map first)
//	unexpected-character   a character that cannot start a key or a value here
//	missing-value          a key with no value on its line ("{" or "[" may start on a later line)
//	missing-separator      a bare key touches its value: need whitespace, ":" or "="
//	missing-quote          a bare key ends in a quote that was never opened (identity": …)
//	missing-comma          two array elements on one line without ","
//	extra-separator        a leading or doubled "," or ";"
//	expected-newline       something follows a value on its line without "," or ";"
//	unknown-escape         a "\" escape other than \t \n \r \" \\ \xHH in a double-quoted string
//	curly-quote            a typographic quote (“ ” ‘ ’) where a straight quote belongs
//	unmatched-brace        a "}" or "]" with nothing to close
//	int-overflow           an integer outside the signed 64-bit range
//	empty-key              a quoted key with no text ("": 1)
//	top-level-braces       the whole file is wrapped in "{ }"
//	too-deep               maps and arrays nested deeper than maxDepth
//	erb-template           the file still holds ERB tags ("<%"); reported once, nothing after it
//	file-too-large         the file is 2 GiB or more; nothing is parsed
//
// Warnings:
//
//	ambiguous-boolean      a bare yes/no/on/off, which stays a string here but is a boolean in NATS
//	ambiguous-number       a bare number-like word such as .5 or 5., which stays a string
//	date-like-string       a bare date that is not exactly YYYY-MM-DDTHH:MM:SSZ, which stays a string
//	include-not-supported  a key named include, which is an ordinary key here, not a file include
//	unicode-space          a non-ASCII space, form feed or lone carriage return outside a string
const (
	codeUnterminatedString = "unterminated-string"
	codeRawNewline         = "raw-newline-in-string"
	codeUnterminatedBlock  = "unterminated-block"
	codeUnterminatedMap    = "unterminated-map"
	codeUnterminatedArray  = "unterminated-array"
	codeUnexpectedChar     = "unexpected-character"
	codeMissingValue       = "missing-value"
	codeMissingSeparator   = "missing-separator"
	codeMissingComma       = "missing-comma"
	codeMissingQuote       = "missing-quote"
	codeExtraSeparator     = "extra-separator"
	codeExpectedNewline    = "expected-newline"
	codeUnknownEscape      = "unknown-escape"
	codeCurlyQuote         = "curly-quote"
	codeUnmatchedBrace     = "unmatched-brace"
	codeIntOverflow        = "int-overflow"
	codeEmptyKey           = "empty-key"
	codeTopLevelBraces     = "top-level-braces"
	codeTooDeep            = "too-deep"
	codeERB                = "erb-template"
	codeTooLarge           = "file-too-large"

	codeAmbiguousBool   = "ambiguous-boolean"
	codeAmbiguousNumber = "ambiguous-number"
	codeDateLike        = "date-like-string"
	codeInclude         = "include-not-supported"
	codeUnicodeSpace    = "unicode-space"
)

// maxDepth bounds the nesting of maps and arrays. The parser recurses once per
// level, so an adversarial "[[[[…" must not be able to exhaust the stack.
const maxDepth = 1000
