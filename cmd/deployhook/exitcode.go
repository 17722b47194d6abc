package main

import (
	"errors"
	"fmt"
)

// Exit codes: the fixed interface of DESIGN.md "Exit codes".
const (
	exitOK          = 0 // success, already migrated, clean dry run, verify without difference
	exitFailure     = 1 // unexpected failure, a store unreachable after retries
	exitUsage       = 2 // usage error, unreadable file
	exitInvalid     = 3 // configuration invalid or refused
	exitLock        = 4 // lock not acquired within --lock-timeout; wait timed out
	exitFailed      = 5 // migration failed, dry run found failures, verify found differences
	exitInterrupted = 6 // SIGINT, SIGTERM
)

// exitError carries an exit code out of a command. Its message is printed
// once, by runMain, to standard error; a silent one (err nil) has been
// printed already.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}

func (e *exitError) Unwrap() error { return e.err }

// exitf returns an error that makes the process exit with code.
func exitf(code int, format string, args ...interface{}) error {
	return &exitError{code: code, err: fmt.Errorf(format, args...)}
}

// withCode wraps err so that the process exits with code; nil stays nil.
func withCode(code int, err error) error {
	if err == nil {
		return nil
	}
	return &exitError{code: code, err: err}
}

// silent is an exit code whose message was already printed.
func silent(code int) error {
	if code == exitOK {
		return nil
	}
	return &exitError{code: code}
}

// codeOf maps an error returned by a command to the process exit code.
func codeOf(err error) int {
	if err == nil {
		return exitOK
	}
	var e *exitError
	if errors.As(err, &e) {
		return e.code
	}
	return exitFailure
}

// messageOf is what runMain prints for err: "" for none or a silent exit.
func messageOf(err error) string {
	if e, ok := err.(*exitError); err == nil || ok && e.err == nil {
		return ""
	}
	return err.Error()
}
