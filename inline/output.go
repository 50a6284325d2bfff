package inline

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"sync"

	"github.com/espy-dpi/espy/verdictlog"
)

// Output is the verdict log: stdout, or a file that Reopen reopens (on
// SIGHUP, after logrotate moved it). It is safe for concurrent use.
//
// Records are written out at once, except between Hold and Release: the
// sample loop holds the output while it handles a batch of samples, so a
// batch of decisions costs one write system call, not one per record.
type Output struct {
	mu   sync.Mutex
	path string
	f    *os.File
	buf  *bufio.Writer
	w    *verdictlog.Writer
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
	// Room for a batch of maxBatch records (~700 bytes each) in one write.
	o.buf = bufio.NewWriterSize(w, 512<<10)
	o.w = verdictlog.NewWriter(o.buf)
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
	if err := o.buf.Flush(); err != nil {
		return fmt.Errorf("inline: write verdict log: %w", err)
	}
	return nil
}

// Reopen closes and reopens the file; for stdout it does nothing.
func (o *Output) Reopen() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.f == nil {
		return nil
	}
	o.buf.Flush() // to the old file: the records belong before the rotation
	o.f.Close()
	return o.open()
}

// Write writes one record.
func (o *Output) Write(r *verdictlog.Record) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if err := o.w.Write(r); err != nil {
		return err
	}
	if o.held {
		return nil
	}
	if err := o.buf.Flush(); err != nil {
		return fmt.Errorf("inline: write verdict log: %w", err)
	}
	return nil
}

// Close closes the file.
func (o *Output) Close() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	ferr := o.buf.Flush()
	if o.f == nil {
		return ferr
	}
	if err := o.f.Close(); err != nil {
		return err
	}
	return ferr
}
