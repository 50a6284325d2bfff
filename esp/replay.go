package esp

import "fmt"

// DefaultReplayWindow is the anti-replay window in packets. RFC 4303
// 3.4.3 asks for at least 32 (64 recommended); 1024 keeps a multi-queue
// sender on a fast link from losing reordered packets.
const DefaultReplayWindow = 1024

// MaxReplayWindow bounds the window so that a configuration error cannot
// make an SA hold megabytes.
const MaxReplayWindow = 1 << 16

// Window is the anti-replay window of RFC 6479: a ring of 64-bit blocks
// one block larger than the window, so that advancing clears whole blocks
// instead of shifting bits. Sequence numbers are 64 bits; with ESN the
// high half is inferred as in RFC 4303 Appendix A.
type Window struct {
	blocks []uint64
	size   uint64 // window in packets, a multiple of 64
	last   uint64 // highest authenticated sequence number, 0: none yet
}

// NewWindow returns a window of size packets, rounded up to a power of two
// of at least 64; 0 means DefaultReplayWindow.
func NewWindow(size int) (*Window, error) {
	if size == 0 {
		size = DefaultReplayWindow
	}
	if size < 0 || size > MaxReplayWindow {
		return nil, fmt.Errorf("esp: replay window %d outside 0..%d", size, MaxReplayWindow)
	}
	n := uint64(64)
	for n < uint64(size) {
		n <<= 1
	}
	// One extra block: the block being filled may be partly left of the
	// window (RFC 6479 section 2).
	return &Window{blocks: make([]uint64, n/64+1), size: n}, nil
}

// Size returns the window in packets.
func (w *Window) Size() int { return int(w.size) }

// Last returns the highest sequence number accepted so far.
func (w *Window) Last() uint64 { return w.last }

// Infer returns the full 64-bit sequence number of a packet carrying the
// low 32 bits seql on an ESN SA (RFC 4303 Appendix A2.1). ok is false
// when the high half would be negative (a packet before the first epoch).
func (w *Window) Infer(seql uint32) (seq uint64, ok bool) {
	tl, th := uint32(w.last), uint32(w.last>>32)
	W := uint32(w.size)
	bottom := tl - W + 1 // wraps in case B
	if tl >= W-1 {
		// Case A: the window lies within one epoch.
		if seql >= bottom {
			return uint64(th)<<32 | uint64(seql), true
		}
		if th == ^uint32(0) {
			return 0, false
		}
		return uint64(th+1)<<32 | uint64(seql), true
	}
	// Case B: the window spans two epochs.
	if seql >= bottom {
		if th == 0 {
			return 0, false
		}
		return uint64(th-1)<<32 | uint64(seql), true
	}
	return uint64(th)<<32 | uint64(seql), true
}

// Check reports whether seq is acceptable: new, or inside the window and
// not yet seen. It does not record seq; call Accept once the packet's ICV
// has verified.
func (w *Window) Check(seq uint64) bool {
	if seq == 0 {
		return false
	}
	if seq > w.last {
		return true
	}
	if w.last-seq >= w.size {
		return false
	}
	blk := (seq / 64) % uint64(len(w.blocks))
	return w.blocks[blk]&(1<<(seq%64)) == 0
}

// Accept records seq, which Check accepted, sliding the window forward
// when seq is the highest so far.
func (w *Window) Accept(seq uint64) {
	n := uint64(len(w.blocks))
	blk := seq / 64
	if seq > w.last {
		cur := w.last / 64
		diff := blk - cur
		if diff > n {
			diff = n
		}
		for i := uint64(1); i <= diff; i++ {
			w.blocks[(cur+i)%n] = 0
		}
		w.last = seq
	}
	w.blocks[blk%n] |= 1 << (seq % 64)
}
