package capture

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Sentinel errors, matched with errors.Is against an *Error.
var (
	// ErrNotCapture means the input is neither pcap nor pcapng.
	ErrNotCapture = errors.New("not a pcap or pcapng file")
	// ErrTruncated means the input ended inside a header or a record.
	ErrTruncated = errors.New("truncated capture")
	// ErrCorruptRecord means a header or record holds impossible values,
	// such as a captured length over the limit or a mismatched block length.
	ErrCorruptRecord = errors.New("corrupt record")
	// ErrEmpty means the input held no bytes at all.
	ErrEmpty = errors.New("empty file")
)

// Error is a fault in a capture, located by file, byte offset and record.
type Error struct {
	File   string // name given to NewReader
	Offset int64  // byte offset of the start of the faulty record or header
	Record int    // 1-based record number (pcapng: block number); 0 for the pcap file header
	Err    error  // the fault; wraps one of the sentinel errors or an I/O error
}

// Error returns the fault on one line, e.g.
// "capture: dev.pcap: offset 123456 (record 812): captured length 4294967295 exceeds limit 262144".
func (e *Error) Error() string {
	name := e.File
	if strings.ContainsFunc(name, func(r rune) bool { return r < ' ' || r == 0x7f }) {
		// Keep the message on one line whatever the file is called.
		name = strconv.Quote(name)
	}
	if e.Record > 0 {
		return fmt.Sprintf("capture: %s: offset %d (record %d): %v", name, e.Offset, e.Record, e.Err)
	}
	return fmt.Sprintf("capture: %s: offset %d: %v", name, e.Offset, e.Err)
}

// Unwrap returns the underlying fault.
func (e *Error) Unwrap() error { return e.Err }

// fault is a sentinel with a precise message: it reads as the message alone,
// so Error stays one short line, yet errors.Is still finds the sentinel.
type fault struct {
	kind error
	msg  string
}

func (f *fault) Error() string { return f.msg }
func (f *fault) Unwrap() error { return f.kind }

func faultf(kind error, format string, args ...any) error {
	return &fault{kind: kind, msg: fmt.Sprintf(format, args...)}
}
