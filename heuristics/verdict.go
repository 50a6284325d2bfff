package heuristics

// Class is a flow's verdict.
type Class uint8

// Verdict classes.
const (
	Unknown   Class = iota // not decided, or undecidable
	Null                   // cleartext payload
	Encrypted              // encrypted payload
)

var classNames = [...]string{"unknown", "null", "encrypted"}

func (c Class) String() string {
	if int(c) < len(classNames) {
		return classNames[c]
	}
	return "invalid"
}

// Source says how a verdict was reached.
type Source uint8

// Verdict sources.
const (
	SourceNone      Source = iota
	SourceHeuristic        // RFC 5879 checks on the flow's packets
	SourceRekey            // a new SPI carrying inner flows of a known null flow
	SourceWESP             // the RFC 5840 header said so
	SourceKnown            // registered by whoever negotiated the SA (IKE, config)
)

var sourceNames = [...]string{"none", "heuristic", "rekey", "wesp", "known"}

func (s Source) String() string {
	if int(s) < len(sourceNames) {
		return sourceNames[s]
	}
	return "invalid"
}

// Mode is the IPsec mode a null flow's next header implies.
type Mode uint8

// IPsec modes.
const (
	ModeUnknown   Mode = iota
	ModeTunnel         // next header IPv4 or IPv6
	ModeTransport      // next header a transport protocol
)

var modeNames = [...]string{"unknown", "tunnel", "transport"}

func (m Mode) String() string {
	if int(m) < len(modeNames) {
		return modeNames[m]
	}
	return "invalid"
}

// Verdict is a flow's decision and its explanation. It is 12 bytes, as
// every decided flow in the flow cache stores one.
type Verdict struct {
	// Evidence is the set of checks that held on the winning candidate.
	Evidence   Evidence
	Class      Class
	Source     Source
	Mode       Mode
	ICVLen     uint8
	IVLen      uint8
	NextHeader uint8 // the next header of the deciding packet (not 59 if another was seen)
	// Packets is how many packets of the flow the decision used.
	Packets uint8
	// Score is the evidence in bits the winning candidate gathered,
	// saturating at 255.
	Score uint8
}

// Decided reports whether v is a final null or encrypted verdict.
func (v *Verdict) Decided() bool { return v.Class != Unknown }
