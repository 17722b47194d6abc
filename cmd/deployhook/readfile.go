package main

import (
	"bytes"
	"os"
)

// readFile is os.ReadFile, into a buffer from allocate: sized from the
// file's size, with bytes.MinRead to spare so that reading it to its end
// never grows it (a file that grew meanwhile is still read whole).
func readFile(name string) ([]byte, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var buf []byte
	if st, err := f.Stat(); err == nil && st.Mode().IsRegular() && st.Size() < 1<<40 {
		buf = allocate(int(st.Size()) + bytes.MinRead)
	}
	b := bytes.NewBuffer(buf)
	_, err = b.ReadFrom(f)
	return b.Bytes(), err
}
