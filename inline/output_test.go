package inline

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/espy-dpi/espy/flowcache"
	"github.com/espy-dpi/espy/verdictlog"
)

// TestOutputReopen is what logrotate does: move the log away, send SIGHUP
// (Reopen), and the next records go to a new file at the old path.
func TestOutputReopen(t *testing.T) {
	dir := t.TempDir()
	name := filepath.Join(dir, "verdicts.jsonl")
	o, err := OpenOutput(name, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	r := &verdictlog.Record{Action: verdictlog.ActionVerdict, Time: time.Unix(0, 0),
		Key:  flowcache.NewKey(netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2"), 0x1000),
		Flow: &flowcache.Flow{}}
	if err := o.Write(r); err != nil {
		t.Fatal(err)
	}
	rotated := name + ".1"
	if err := os.Rename(name, rotated); err != nil {
		t.Fatal(err)
	}
	if err := o.Reopen(); err != nil {
		t.Fatal(err)
	}
	if err := o.Write(r); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{rotated, name} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if n := strings.Count(string(b), "\n"); n != 1 {
			t.Errorf("%s has %d records, want 1", f, n)
		}
	}
}

// countWriter counts Write calls.
type countWriter struct {
	strings.Builder
	writes int
}

func (w *countWriter) Write(p []byte) (int, error) {
	w.writes++
	return w.Builder.Write(p)
}

// TestOutputHold: records written between Hold and Release go out in one
// write, with the bytes verdictlog.Writer writes (the schema replay uses);
// records written unheld go out at once; a hold that outgrows the buffer
// writes early rather than grow it.
func TestOutputHold(t *testing.T) {
	var dst countWriter
	o, err := OpenOutput("-", &dst)
	if err != nil {
		t.Fatal(err)
	}
	var want strings.Builder
	ref := verdictlog.NewWriter(&want)
	rec := func(i int) *verdictlog.Record {
		return &verdictlog.Record{Action: verdictlog.ActionVerdict, Time: time.Unix(1_800_000_000, int64(i)),
			Key:  flowcache.NewKey(netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("198.51.100.2"), uint32(0x1000+i)),
			Flow: &flowcache.Flow{Packets: 1, Bytes: 100}}
	}
	write := func(i int) {
		if err := o.Write(rec(i)); err != nil {
			t.Fatal(err)
		}
		ref.Write(rec(i))
	}
	o.Hold()
	for i := range maxBatch {
		write(i)
	}
	if dst.writes != 0 {
		t.Fatalf("%d writes while held", dst.writes)
	}
	if err := o.Release(); err != nil {
		t.Fatal(err)
	}
	if dst.writes != 1 {
		t.Errorf("%d writes for a released batch, want 1", dst.writes)
	}
	write(maxBatch)
	if dst.writes != 2 {
		t.Errorf("%d writes after an unheld record, want 2", dst.writes)
	}
	o.Hold()
	n := outputBuffer / len(verdictlog.Append(nil, rec(0), ""))
	for i := range n + 1 {
		write(maxBatch + 1 + i)
	}
	if dst.writes != 3 || cap(o.buf) != outputBuffer {
		t.Errorf("%d writes after a hold of %d records of a %d-byte buffer (grown to %d), want 3", dst.writes, n+1, outputBuffer, cap(o.buf))
	}
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
	if dst.String() != want.String() {
		t.Error("the output differs from verdictlog.Writer's")
	}
}
