package main

import (
	"encoding/json"
	"io"

	"github.com/urfave/cli/v2"
)

// The --format values.
const (
	formatText = "text"
	formatJSON = "json"
)

// jsonVersion is the "version" of every JSON object the commands print:
// raised when a field changes meaning or goes away (new fields may appear
// within a version). The README's reference shows each object.
const jsonVersion = 1

func formatFlag(what string) *cli.StringFlag {
	return &cli.StringFlag{Name: "format", Value: formatText, Usage: "output `FORMAT` of " + what + ": text or json (one JSON object per line per component)"}
}

// outputFormat is the command's --format, checked.
func outputFormat(c *cli.Context) (string, error) {
	switch f := c.String("format"); f {
	case formatText, formatJSON:
		return f, nil
	default:
		return "", usagef(c, "--format must be text or json, not %q", f)
	}
}

// writeJSONLine writes v as one line of JSON.
func writeJSONLine(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}
