// Package config reads espy's YAML configuration file: interfaces, mode,
// fail-open or fail-closed, actions per verdict, sampling, map and flow
// table sizes, timeouts, known SAs, inner rules, the log and metrics
// outputs, and the IKE daemon's listeners and tunnels. A bad file is
// rejected at start with the file, line and reason.
//
// The policy section (policy:) is read by package policy from the same file.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Config is the whole file.
type Config struct {
	Interfaces []string    `yaml:"interfaces"`
	Attach     string      `yaml:"attach"` // auto, driver, generic
	Fail       string      `yaml:"fail"`   // open, closed
	Actions    Actions     `yaml:"actions"`
	Sampling   Sampling    `yaml:"sampling"`
	Maps       Maps        `yaml:"maps"`
	Flows      Flows       `yaml:"flows"`
	Heuristics Heuristics  `yaml:"heuristics"`
	Log        Log         `yaml:"log"`
	Metrics    Metrics     `yaml:"metrics"`
	PinPath    string      `yaml:"pin_path"`
	KnownSAs   []KnownSA   `yaml:"known_sas"`
	InnerRules []InnerRule `yaml:"inner_rules"`
	// Policy is the policy section, read by package policy; kept here only
	// so that the key is known.
	Policy yaml.Node `yaml:"policy"`
	// IKE and Tunnels configure the IKE daemon inside espy run (tunnels.go).
	IKE     IKE      `yaml:"ike"`
	Tunnels []Tunnel `yaml:"tunnels"`

	file   string
	lines  map[string]int
	values map[string]string // scalar text by path, as written
}

// Actions says what the fast path does per verdict.
type Actions struct {
	Encrypted    string `yaml:"encrypted"`     // pass, drop, count
	InnerDefault string `yaml:"inner_default"` // allow, drop, count: ESP-NULL with no inner rule
}

// Sampling bounds what the fast path sends to userspace.
type Sampling struct {
	Packets uint32 `yaml:"packets"` // first packets of each new flow; default 4
	Rate    uint32 `yaml:"rate"`    // per CPU per second; default 2000
	Burst   uint32 `yaml:"burst"`   // default 64
	SnapLen uint32 `yaml:"snaplen"` // bytes per sample; default 2048
}

// Maps sizes the BPF maps.
type Maps struct {
	Verdicts   int `yaml:"verdicts"`
	Pending    int `yaml:"pending"`
	InnerRules int `yaml:"inner_rules"`
}

// Flows sizes the userspace flow table.
type Flows struct {
	Capacity       int      `yaml:"capacity"`
	Pending        int      `yaml:"pending"`
	IdleTimeout    Duration `yaml:"idle_timeout"`
	PendingTimeout Duration `yaml:"pending_timeout"`
	SweepInterval  Duration `yaml:"sweep_interval"`
}

// Heuristics tunes the RFC 5879 engine.
type Heuristics struct {
	Threshold      int `yaml:"threshold"`
	EncryptedAfter int `yaml:"encrypted_after"`
	MaxPackets     int `yaml:"max_packets"`
}

// Log is the verdict log output.
type Log struct {
	Path   string `yaml:"path"`   // "-" or empty: stdout
	Format string `yaml:"format"` // jsonl
	Level  string `yaml:"level"`  // diagnostics: debug, info, warn, error
}

// Metrics is the Prometheus endpoint.
type Metrics struct {
	Listen string `yaml:"listen"` // host:port; empty: off
}

// KnownSA registers an SA whose algorithm is known (config beats guesses).
type KnownSA struct {
	Src        string `yaml:"src"`
	Dst        string `yaml:"dst"`
	SPI        string `yaml:"spi"`        // decimal or 0x hex
	Encryption string `yaml:"encryption"` // null or encrypted (YAML's null is read as the word)
	ICV        int    `yaml:"icv"`
	IV         int    `yaml:"iv"`
}

// InnerRule is an exact inner 5-tuple and the action for ESP-NULL packets
// carrying it.
type InnerRule struct {
	Proto   string `yaml:"proto"` // tcp, udp, icmp, icmpv6, sctp or a number
	Src     string `yaml:"src"`
	Dst     string `yaml:"dst"`
	SrcPort int    `yaml:"sport"`
	DstPort int    `yaml:"dport"`
	Action  string `yaml:"action"` // allow, drop, count
}

// Duration is a time.Duration written as "30s", "10m".
type Duration time.Duration

// UnmarshalYAML reads a Go duration string.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := time.ParseDuration(n.Value)
	if err != nil || v < 0 {
		return fmt.Errorf("line %d: invalid duration %q (want e.g. 30s, 10m)", n.Line, n.Value)
	}
	*d = Duration(v)
	return nil
}

// ErrInvalid is wrapped by every validation error.
var ErrInvalid = errors.New("invalid configuration")

// Error locates a fault in the file.
type Error struct {
	File   string
	Line   int
	Reason string
}

func (e *Error) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("config: %s:%d: %s", e.File, e.Line, e.Reason)
	}
	return fmt.Sprintf("config: %s: %s", e.File, e.Reason)
}

// Unwrap makes errors.Is(err, ErrInvalid) true.
func (e *Error) Unwrap() error { return ErrInvalid }

// Load reads and validates the file at path.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return Parse(path, data)
}

// maxFileSize bounds what Parse reads: a config is small, and YAML aliases
// can make a small file expand.
const maxFileSize = 4 << 20

// Parse reads and validates a configuration; file names it in errors.
func Parse(file string, data []byte) (*Config, error) {
	if len(data) > maxFileSize {
		return nil, &Error{File: file, Reason: fmt.Sprintf("file is %d bytes, more than %d", len(data), maxFileSize)}
	}
	c := &Config{file: file, lines: map[string]int{}, values: map[string]string{}}
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, yamlError(file, err)
	}
	if len(root.Content) > 0 {
		if root.Content[0].Kind != yaml.MappingNode {
			return nil, &Error{File: file, Line: root.Content[0].Line, Reason: "the file must be a mapping of sections"}
		}
		c.index(root.Content[0], "")
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(c); err != nil && err.Error() != "EOF" {
		return nil, yamlError(file, err)
	}
	if err := c.validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// index records the line of every mapping key and sequence item by dotted
// path ("sampling.packets", "known_sas.0.spi").
func (c *Config) index(n *yaml.Node, prefix string) {
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			p := prefix + n.Content[i].Value
			c.lines[p] = n.Content[i].Line
			if v := n.Content[i+1]; v.Kind == yaml.ScalarNode {
				c.values[p] = v.Value
			}
			c.index(n.Content[i+1], p+".")
		}
	case yaml.SequenceNode:
		for i, item := range n.Content {
			p := prefix + strconv.Itoa(i)
			c.lines[p] = item.Line
			c.index(item, p+".")
		}
	}
}

func yamlError(file string, err error) error {
	msg := err.Error()
	msg = strings.TrimPrefix(msg, "yaml: ")
	msg = strings.TrimPrefix(msg, "unmarshal errors:\n  ")
	line := 0
	if strings.HasPrefix(msg, "line ") {
		rest := msg[len("line "):]
		if i := strings.IndexByte(rest, ':'); i > 0 {
			if n, err := strconv.Atoi(rest[:i]); err == nil {
				line, msg = n, strings.TrimSpace(rest[i+1:])
			}
		}
	}
	if i := strings.IndexByte(msg, '\n'); i >= 0 {
		msg = msg[:i] // the first of several errors is enough to fix
	}
	return &Error{File: file, Line: line, Reason: msg}
}

// fail reports a fault at path, or at its nearest enclosing key when path
// itself is absent (a required key that is missing).
func (c *Config) fail(path, format string, args ...any) error {
	line, ok := c.lines[path]
	for !ok && path != "" {
		i := strings.LastIndexByte(path, '.')
		if i < 0 {
			break
		}
		path = path[:i]
		line, ok = c.lines[path]
	}
	return &Error{File: c.file, Line: line, Reason: fmt.Sprintf(format, args...)}
}

func (c *Config) validate() error {
	if len(c.Interfaces) > 2 {
		return c.fail("interfaces", "at most two interfaces (one: monitor mode; two: bridge), got %d", len(c.Interfaces))
	}
	for i, name := range c.Interfaces {
		if name == "" || len(name) > 15 || strings.ContainsAny(name, "/ \t") {
			return c.fail("interfaces."+strconv.Itoa(i), "invalid interface name %q", name)
		}
	}
	if err := oneOf(c, "attach", c.Attach, "auto", "driver", "generic"); err != nil {
		return err
	}
	if err := oneOf(c, "fail", c.Fail, "open", "closed"); err != nil {
		return err
	}
	if err := oneOf(c, "actions.encrypted", c.Actions.Encrypted, "pass", "drop", "count"); err != nil {
		return err
	}
	if err := oneOf(c, "actions.inner_default", c.Actions.InnerDefault, "allow", "drop", "count"); err != nil {
		return err
	}
	if err := oneOf(c, "log.format", c.Log.Format, "jsonl"); err != nil {
		return err
	}
	if err := oneOf(c, "log.level", c.Log.Level, "debug", "info", "warn", "error"); err != nil {
		return err
	}
	if c.Sampling.Packets > 255 {
		return c.fail("sampling.packets", "at most 255 samples per flow, got %d", c.Sampling.Packets)
	}
	if c.Sampling.SnapLen != 0 && (c.Sampling.SnapLen < 128 || c.Sampling.SnapLen > 16384) {
		return c.fail("sampling.snaplen", "snaplen must be between 128 and 16384 bytes, got %d", c.Sampling.SnapLen)
	}
	for _, f := range []struct {
		path string
		v    int
	}{
		{"maps.verdicts", c.Maps.Verdicts}, {"maps.pending", c.Maps.Pending}, {"maps.inner_rules", c.Maps.InnerRules},
		{"flows.capacity", c.Flows.Capacity}, {"flows.pending", c.Flows.Pending},
		{"heuristics.threshold", c.Heuristics.Threshold}, {"heuristics.encrypted_after", c.Heuristics.EncryptedAfter},
		{"heuristics.max_packets", c.Heuristics.MaxPackets},
	} {
		if f.v < 0 || f.v > 1<<26 {
			return c.fail(f.path, "%d is out of range (0 to %d)", f.v, 1<<26)
		}
	}
	if c.Heuristics.MaxPackets > 255 {
		return c.fail("heuristics.max_packets", "at most 255, got %d", c.Heuristics.MaxPackets)
	}
	if c.Metrics.Listen != "" {
		if _, err := netip.ParseAddrPort(c.Metrics.Listen); err != nil {
			return c.fail("metrics.listen", "metrics.listen must be ADDRESS:PORT, got %q", c.Metrics.Listen)
		}
	}
	for i := range c.KnownSAs {
		if _, err := c.KnownSA(i); err != nil {
			return err
		}
	}
	for i := range c.InnerRules {
		if _, err := c.InnerRule(i); err != nil {
			return err
		}
	}
	return c.validateIKE()
}

func oneOf(c *Config, path, v string, allowed ...string) error {
	if v == "" {
		return nil
	}
	for _, a := range allowed {
		if v == a {
			return nil
		}
	}
	return c.fail(path, "%s must be one of %s, got %q", path, strings.Join(allowed, ", "), v)
}

// File returns the name the configuration was read from.
func (c *Config) File() string { return c.file }
