// Package policycmd implements "espy policy": check, decorrelate and bench.
package policycmd

import (
	"flag"
	"fmt"
	"io"
)

// Exit codes.
const (
	ExitOK      = 0 // success
	ExitInvalid = 1 // the policy is invalid, or a check or bench failed
	ExitUsage   = 2 // bad command line
)

const usage = `usage: espy policy <command> [flags] FILE

commands:
  check FILE         validate the policy section of a YAML config; report
                     overlapping and shadowed rules
  decorrelate FILE   rewrite the ordered rules into disjoint entries (RFC 4301
                     section 4.4.1) and print them with their count
  bench --classbench RULES [--trace TRACE]
                     build every classifier over a ClassBench filter set,
                     check it against the trace and time lookups

Run "espy policy <command> --help" for a command's flags.
`

// Main runs "espy policy" with args (after "policy") and returns the exit
// code.
func Main(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return ExitUsage
	}
	switch args[0] {
	case "check":
		return check(args[1:], stdout, stderr)
	case "decorrelate":
		return decorrelate(args[1:], stdout, stderr)
	case "bench":
		return bench(args[1:], stdout, stderr)
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, usage)
		return ExitOK
	}
	fmt.Fprintf(stderr, "espy policy: unknown command %q\n%s", args[0], usage)
	return ExitUsage
}

// newFlags returns a flag set that prints its usage to stderr, or to stdout
// for an explicit --help.
func newFlags(name, synopsis string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("espy policy "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: espy policy %s %s\n", name, synopsis)
		fs.PrintDefaults()
	}
	return fs
}

// parseFlags parses args; done is true when the command should return code.
func parseFlags(fs *flag.FlagSet, args []string, stdout io.Writer) (code int, done bool) {
	for _, a := range args {
		if a == "-h" || a == "-help" || a == "--help" {
			fs.SetOutput(stdout)
			fs.Usage()
			return ExitOK, true
		}
	}
	if err := fs.Parse(args); err != nil {
		return ExitUsage, true
	}
	return 0, false
}
