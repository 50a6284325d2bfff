package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/espy-dpi/espy/capture"
	"github.com/espy-dpi/espy/replay"
	"github.com/espy-dpi/espy/verdictlog"
)

const replayUsage = `usage: espy replay [flags] FILE...

Reads pcap and pcapng captures ("-" reads stdin) and decides, per ESP flow
(outer source, destination, SPI), whether it carries cleartext (ESP-NULL or
ENCR_NULL_AUTH_AES_GMAC) or encrypted payload, with ICV length, IV length,
next header and mode for cleartext flows.

Link types: Ethernet (with up to two 802.1Q/802.1ad tags), Linux SLL and SLL2,
raw IPv4/IPv6, BSD loopback. Carriers: IP protocol 50, UDP 4500 (RFC 3948)
and --udp-port ports, TCP (RFC 9329) on --tcp-port ports, WESP (RFC 5840).
Outer IP fragments are counted, not reassembled.

Output (--format):
  jsonl   one JSON object per line, Elastic Common Schema names: a record when
          a verdict is reached (event.action esp-verdict) or withdrawn
          (esp-verdict-revoked), and one per flow when it ends (esp-flow-end,
          verdict "unknown" where none was reached). See docs/verdict-schema.md.
  table   a summary of flows by verdict, ICV/IV length, mode and inner protocol.
The default is table when stdout is a terminal, jsonl otherwise.

Exit codes:
  0  every capture was read to its end
  1  a capture could not be read entirely (not a capture, truncated, corrupt,
     unreadable): one line on stderr names the file and byte offset; every
     verdict reached before the fault is still written, and the other files
     are still read
  2  bad command line
  3  an output could not be written

Flags:
`

type portList []uint16

func (p *portList) String() string { return fmt.Sprint(*p) }

func (p *portList) Set(s string) error {
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.ParseUint(strings.TrimSpace(f), 10, 16)
		if err != nil || n == 0 {
			return fmt.Errorf("invalid port %q", f)
		}
		*p = append(*p, uint16(n))
	}
	return nil
}

func replayMain(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("replay", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		format     = fs.String("format", "", "output format: jsonl or table (default: table on a terminal, else jsonl)")
		writeInner = fs.String("write-inner", "", "write the decapsulated inner packets of null flows to this pcap file")
		threshold  = fs.Int("threshold", 0, "evidence in bits for a null verdict (default 40)")
		capacity   = fs.Int("flows", 0, "flow table capacity (default 1000000)")
		quiet      = fs.Bool("quiet", false, "no progress bar")
		udpPorts   portList
		tcpPorts   portList
	)
	fs.Var(&udpPorts, "udp-port", "extra UDP `port`s carrying ESP per RFC 3948, besides 4500 (repeatable, comma-separated)")
	fs.Var(&tcpPorts, "tcp-port", "TCP `port`s carrying RFC 9329 ESP-in-TCP (repeatable, comma-separated)")
	fs.Usage = func() {
		fmt.Fprint(stderr, replayUsage)
		fs.PrintDefaults()
	}
	files, err := parseInterleaved(fs, args)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if len(files) == 0 {
		fmt.Fprintln(stderr, "espy replay: no capture files given (use - for stdin)")
		return exitUsage
	}
	if *format == "" {
		*format = "jsonl"
		if isTerminal(stdout) {
			*format = "table"
		}
	}
	if *format != "jsonl" && *format != "table" {
		fmt.Fprintf(stderr, "espy replay: unknown format %q (jsonl or table)\n", *format)
		return exitUsage
	}

	out := bufio.NewWriterSize(stdout, 256<<10)
	opt := replay.Options{UDPPorts: udpPorts, TCPPorts: tcpPorts}
	opt.Engine.Threshold = *threshold
	opt.Cache.Capacity = *capacity
	if *format == "jsonl" {
		opt.Log = verdictlog.NewWriter(out)
	}
	var innerFile *os.File
	var innerBuf *bufio.Writer
	if *writeInner != "" {
		innerFile, err = os.Create(*writeInner)
		if err != nil {
			fmt.Fprintf(stderr, "espy replay: %v\n", err)
			return exitOutput
		}
		defer innerFile.Close()
		innerBuf = bufio.NewWriterSize(innerFile, 256<<10)
		if opt.Inner, err = replay.NewInnerWriter(innerBuf); err != nil {
			fmt.Fprintf(stderr, "espy replay: %s: %v\n", *writeInner, err)
			return exitOutput
		}
	}
	a, err := replay.New(opt)
	if err != nil {
		fmt.Fprintf(stderr, "espy replay: %v\n", err)
		return exitUsage
	}

	code := exitOK
	showProgress := !*quiet && isTerminal(stderr)
	for _, name := range files {
		err := replayFile(a, name, stdin, stderr, showProgress)
		if err == nil {
			continue
		}
		var ce *capture.Error
		if errors.As(err, &ce) || errors.Is(err, os.ErrNotExist) || errors.Is(err, os.ErrPermission) || isInputError(err) {
			fmt.Fprintf(stderr, "espy replay: %v\n", err)
			code = exitInput
			continue
		}
		fmt.Fprintf(stderr, "espy replay: %v\n", err)
		return exitOutput
	}
	if err := a.Finish(); err != nil {
		fmt.Fprintf(stderr, "espy replay: %v\n", err)
		return exitOutput
	}
	if *format == "table" {
		if err := a.Summary().WriteTable(out, a.Counters()); err != nil {
			fmt.Fprintf(stderr, "espy replay: write table: %v\n", err)
			return exitOutput
		}
	}
	if err := out.Flush(); err != nil {
		fmt.Fprintf(stderr, "espy replay: write output: %v\n", err)
		return exitOutput
	}
	if innerBuf != nil {
		if err := innerBuf.Flush(); err != nil {
			fmt.Fprintf(stderr, "espy replay: %s: %v\n", *writeInner, err)
			return exitOutput
		}
		if err := innerFile.Close(); err != nil {
			fmt.Fprintf(stderr, "espy replay: %s: %v\n", *writeInner, err)
			return exitOutput
		}
	}
	return code
}

// inputError marks an error of reading an input file (as opposed to
// writing an output).
type inputError struct{ err error }

func (e inputError) Error() string { return e.err.Error() }
func (e inputError) Unwrap() error { return e.err }

func isInputError(err error) bool {
	var ie inputError
	return errors.As(err, &ie)
}

func replayFile(a *replay.Analyzer, name string, stdin io.Reader, stderr io.Writer, showProgress bool) error {
	var in io.Reader = stdin
	var size int64
	display := name
	if name == "-" {
		display = "stdin"
	} else {
		f, err := os.Open(name)
		if err != nil {
			return inputError{err}
		}
		defer f.Close()
		if st, err := f.Stat(); err == nil {
			if st.IsDir() {
				return inputError{fmt.Errorf("%s: is a directory", name)}
			}
			size = st.Size()
		}
		in = f
	}
	r, err := capture.NewReader(display, in)
	if err != nil {
		return err
	}
	var progress func(int64)
	if showProgress {
		bar := newProgress(stderr, display, size)
		progress = bar.update
		defer bar.done()
	}
	return a.Read(r, display, progress)
}

// parseInterleaved parses flags that may come before, between or after the
// file arguments.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var files []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return files, nil
		}
		files = append(files, args[0])
		args = args[1:]
	}
}

// progressBar draws one line on a terminal: file, percentage, packets/s.
type progressBar struct {
	w     io.Writer
	name  string
	size  int64
	start time.Time
	last  time.Time
}

func newProgress(w io.Writer, name string, size int64) *progressBar {
	now := time.Now()
	return &progressBar{w: w, name: name, size: size, start: now, last: now}
}

func (p *progressBar) update(off int64) {
	now := time.Now()
	if now.Sub(p.last) < 200*time.Millisecond {
		return
	}
	p.last = now
	mb := float64(off) / (1 << 20)
	rate := mb / now.Sub(p.start).Seconds()
	if p.size > 0 {
		pct := float64(off) / float64(p.size) * 100
		const width = 30
		filled := int(pct / 100 * width)
		fmt.Fprintf(p.w, "\r%s [%s%s] %5.1f%% %.0f MiB/s ", p.name, strings.Repeat("#", filled), strings.Repeat(" ", width-filled), pct, rate)
		return
	}
	fmt.Fprintf(p.w, "\r%s %.0f MiB %.0f MiB/s ", p.name, mb, rate)
}

func (p *progressBar) done() {
	if p.last != p.start {
		fmt.Fprint(p.w, "\r\033[K")
	}
}
