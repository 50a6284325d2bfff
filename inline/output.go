package inline

import (
	"fmt"
	"io"
	"os"
	"sync"

	"github.com/espy-dpi/espy/verdictlog"
)

// Output is the verdict log: stdout, or a file that Reopen reopens (on
// SIGHUP, after logrotate moved it). It is safe for concurrent use.
type Output struct {
	mu   sync.Mutex
	path string
	f    *os.File
	w    *verdictlog.Writer
}

// OpenOutput opens path for appending ("" or "-" is stdout).
func OpenOutput(path string, stdout io.Writer) (*Output, error) {
	o := &Output{path: path}
	if path == "" || path == "-" {
		o.w = verdictlog.NewWriter(stdout)
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
	o.f, o.w = f, verdictlog.NewWriter(f)
	return nil
}

// Reopen closes and reopens the file; for stdout it does nothing.
func (o *Output) Reopen() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.f == nil {
		return nil
	}
	o.f.Close()
	return o.open()
}

// Write writes one record.
func (o *Output) Write(r *verdictlog.Record) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.w.Write(r)
}

// Close closes the file.
func (o *Output) Close() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.f == nil {
		return nil
	}
	return o.f.Close()
}
