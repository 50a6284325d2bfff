package heuristics

// candidate is one (IV length, ICV length) way to parse an ESP packet.
type candidate struct{ iv, icv uint8 }

// candidates in RFC 5879's order: no IV before the 8-byte IV of
// ENCR_NULL_AUTH_AES_GMAC, shorter ICVs first. Order breaks ties only; the
// evidence decides.
var candidates = [...]candidate{
	{0, 0}, {0, 8}, {0, 12}, {0, 16}, {0, 20}, {0, 24}, {0, 32},
	{8, 0}, {8, 8}, {8, 12}, {8, 16}, {8, 20}, {8, 24}, {8, 32},
}

const nCandidates = len(candidates)

// espHeaderLen is the SPI and sequence number.
const espHeaderLen = 8

// Structural evidence: a pad length byte consistent with the padding before
// it is worth 6 bits (random bytes pass with a chance of about 1/256, and
// real senders pick among ~4 minimal pad lengths), each pad byte 8, a next
// header from the set 4.
const (
	bitsPadLength  = 6
	bitsPerPadByte = 8
	bitsNextHeader = 4
	maxPadBits     = 64
)

// minInner is the smallest payload each next header can have.
func minInner(nh uint8) int {
	switch nh {
	case 4, 6:
		return 20
	case 41:
		return 40
	case 132:
		return 12
	case 17, 1, 58, 50, 44, 60:
		return 8
	case 47:
		return 4
	}
	return 0
}

// knownNextHeader reports whether nh is in RFC 5879's set of next headers
// (plus 59, the TFC dummy packet).
func knownNextHeader(nh uint8) bool {
	switch nh {
	case 6, 17, 1, 58, 132, 4, 41, 44, 60, 50, 47, 59:
		return true
	}
	return false
}

// trailer is the result of reading an ESP trailer under one candidate.
type trailer struct {
	payload []byte // inner bytes: after the IV, before the padding
	padLen  int
	nh      uint8
}

// readTrailer parses esp under candidate c. It reports false when the pad
// length does not fit or the pad bytes are not 1, 2, …, N (RFC 4303 section
// 2.4's default padding, which NULL encryption always uses).
func readTrailer(esp []byte, c candidate, t *trailer) bool {
	end := len(esp) - int(c.icv) - 2 // index of the pad length byte
	first := espHeaderLen + int(c.iv)
	if end < first {
		return false
	}
	padLen := int(esp[end])
	start := end - padLen
	if start < first {
		return false
	}
	pad := esp[start:end]
	for i, b := range pad {
		if b != byte(i+1) {
			return false
		}
	}
	t.payload = esp[first:start]
	t.padLen = padLen
	t.nh = esp[end+1]
	return true
}

// readNull parses esp under a null verdict's IV and ICV lengths and reports
// whether it is a packet of that flow: a valid trailer, a next header from
// the set, and a payload long enough for it.
func readNull(v *Verdict, esp []byte, t *trailer) bool {
	return readTrailer(esp, candidate{v.IVLen, v.ICVLen}, t) && knownNextHeader(t.nh) && len(t.payload) >= minInner(t.nh)
}

// structureBits is the evidence of a valid trailer.
func structureBits(padLen int) int {
	b := bitsPadLength + bitsNextHeader + bitsPerPadByte*padLen
	if b > maxPadBits {
		b = maxPadBits
	}
	return b
}
