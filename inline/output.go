package inline

import (
	"fmt"
	"io"
	"os"
	"sync"

	"github.com/espy-dpi/espy/verdictlog"
)

// outputBuffer is the room for records held between Hold and Release: a
// batch of maxBatch records (~700 bytes each) goes out in one write.
const outputBuffer = 512 << 10

// maxRecord bounds a record's length (about 900 bytes with every field),
// so that a held buffer with this much room left takes one more without
// growing.
const maxRecord = 2048

// Output is the verdict log: stdout, or a file that Reopen reopens (on
// SIGHUP, after logrotate moved it). It is safe for concurrent use.
//
// Records are written out at once, except between Hold and Release: the
// sample loop holds the output while it handles a batch of samples, so a
// batch of decisions costs one write system call, not one per record.
// Records are encoded straight into the buffer that is written (not into a
// record buffer and then copied into a bufio.Writer).
type Output struct {
	mu   sync.Mutex
	path string
	f    *os.File
	dst  io.Writer
	buf  []byte // records not yet written
	held bool
}

// OpenOutput opens path for appending ("" or "-" is stdout).
func OpenOutput(path string, stdout io.Writer) (*Output, error) {
	o := &Output{path: path}
	if path == "" || path == "-" {
		o.setDst(stdout)
		return o, nil
	}
	if err := o.open(); err != nil {
		return nil, err
	}
	return o, nil
}

func (o *Output) open() error {
	f, err := os.OpenFile(o.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return fmt.Errorf("inline: open verdict log: %w", err)
	}
	o.f = f
	o.setDst(f)
	return nil
}

func (o *Output) setDst(w io.Writer) {
	o.dst = w
	if o.buf == nil {
		o.buf = make([]byte, 0, outputBuffer)
	}
}

// flushLocked writes out the buffered records. A failed write drops them:
// the next records go to the file, not after a stale error.
func (o *Output) flushLocked() error {
	if len(o.buf) == 0 {
		return nil
	}
	_, err := o.dst.Write(o.buf)
	o.buf = o.buf[:0]
	if err != nil {
		return fmt.Errorf("inline: write verdict log: %w", err)
	}
	return nil
}

// Hold keeps records in memory until Release.
func (o *Output) Hold() {
	o.mu.Lock()
	o.held = true
	o.mu.Unlock()
}

// Release writes out the records held since Hold.
func (o *Output) Release() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.held = false
	return o.flushLocked()
}

// Reopen closes and reopens the file; for stdout it does nothing.
func (o *Output) Reopen() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.f == nil {
		return nil
	}
	o.flushLocked() // to the old file: the records belong before the rotation
	o.f.Close()
	return o.open()
}

// Write writes one record.
func (o *Output) Write(r *verdictlog.Record) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.buf = verdictlog.Append(o.buf, r, "")
	if o.held && len(o.buf) <= outputBuffer-maxRecord {
		return nil
	}
	return o.flushLocked()
}

// Close closes the file.
func (o *Output) Close() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	ferr := o.flushLocked()
	if o.f == nil {
		return ferr
	}
	if err := o.f.Close(); err != nil {
		return err
	}
	return ferr
}
