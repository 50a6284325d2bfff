package policycmd

import (
	"bufio"
	"fmt"
	"io"
	"time"

	"github.com/espy-dpi/espy/policy"
)

func decorrelate(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("decorrelate", "[--max-entries N] [--count] FILE", stderr)
	maxEntries := fs.Int("max-entries", 0, "entry bound (default: the file's max_entries)")
	countOnly := fs.Bool("count", false, "print only the summary line")
	if code, done := parseFlags(fs, args, stdout); done {
		return code
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return ExitUsage
	}
	p, err := policy.LoadFile(fs.Arg(0))
	if err != nil {
		fmt.Fprintln(stderr, err)
		return ExitInvalid
	}
	limit := p.MaxEntries
	if *maxEntries > 0 {
		limit = *maxEntries
	}
	t0 := time.Now()
	d, err := policy.Decorrelate(p.Rules, limit)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return ExitInvalid
	}
	el := time.Since(t0)
	w := bufio.NewWriter(stdout)
	if !*countOnly {
		for i, e := range d.Entries() {
			sa := ""
			if e.SA != "" {
				sa = " sa=" + e.SA
			}
			fmt.Fprintf(w, "entry %d: rule=%s action=%s%s %s\n", i+1, e.Rule, e.Action, sa, e.Box)
		}
	}
	fmt.Fprintf(w, "decorrelate: %s: rules=%d entries=%d limit=%d ms=%.1f\n", fs.Arg(0), len(p.Rules), d.Len(), limit, float64(el.Microseconds())/1000)
	if err := w.Flush(); err != nil {
		fmt.Fprintln(stderr, err)
		return ExitInvalid
	}
	return ExitOK
}
