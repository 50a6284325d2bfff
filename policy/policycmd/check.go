package policycmd

import (
	"fmt"
	"io"
	"strings"

	"github.com/espy-dpi/espy/policy"
)

func check(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("check", "[--max-report N] FILE", stderr)
	maxReport := fs.Int("max-report", 50, "report at most `N` overlapping pairs (0: all)")
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
	rules := p.Rules
	ov := policy.FindOverlaps(rules, *maxReport)
	total := len(ov)
	if *maxReport > 0 && total == *maxReport {
		total = policy.CountOverlaps(rules)
	}
	for _, o := range ov {
		a, b := &rules[o.A], &rules[o.B]
		fmt.Fprintf(stdout, "overlap: %q (line %d) and %q (line %d) in %s\n", a.Name, a.Line, b.Name, b.Line, o.Region)
	}
	if len(ov) < total {
		fmt.Fprintf(stdout, "overlap: ... %d more pairs not shown\n", total-len(ov))
	}
	code := ExitOK
	sh := policy.FindShadowed(rules)
	conflicts := 0
	for _, s := range sh {
		r := &rules[s.Rule]
		names := make([]string, len(s.By))
		for i, j := range s.By {
			names[i] = fmt.Sprintf("%q (line %d)", rules[j].Name, rules[j].Line)
		}
		kind := "shadowed"
		if s.Redundant {
			kind = "redundant"
		} else {
			conflicts++
			code = ExitInvalid
		}
		fmt.Fprintf(stdout, "%s: %q (line %d) is never reached: all of %s is matched first by %s\n",
			kind, r.Name, r.Line, r.Box, strings.Join(names, ", "))
	}
	fmt.Fprintf(stdout, "check: %s: mode=%s rules=%d overlapping_pairs=%d shadowed=%d redundant=%d\n",
		fs.Arg(0), p.Mode, len(rules), total, conflicts, len(sh)-conflicts)
	return code
}
