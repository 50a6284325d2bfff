package esp

import "testing"

func TestWindow(t *testing.T) {
	type step struct {
		seq    uint64
		accept bool
	}
	cases := []struct {
		name  string
		size  int
		steps []step
	}{
		{"zero never", 64, []step{{0, false}, {1, true}, {0, false}}},
		{"duplicates", 64, []step{{1, true}, {1, false}, {3, true}, {2, true}, {2, false}, {3, false}}},
		{"left edge", 64, []step{{100, true}, {37, true}, {36, false}, {37, false}}},
		{"big jump clears", 64, []step{{5, true}, {1000, true}, {5, false}, {937, true}, {999, true}, {999, false}, {936, false}}},
		{"jump over whole ring", 128, []step{{10, true}, {11, true}, {10 + 64*3, true}, {11 + 64*3, true}, {10 + 64*3, false}, {100000, true}, {100000 - 127, true}, {100000 - 128, false}}},
		{"block boundary", 64, []step{{64, true}, {127, true}, {63, false}, {65, true}, {128, true}, {65, false}, {64, false}}},
		{"rounded to 1024", 1000, []step{{2000, true}, {977, true}, {976, false}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			w, err := NewWindow(c.size)
			if err != nil {
				t.Fatal(err)
			}
			for i, s := range c.steps {
				got := w.Check(s.seq)
				if got != s.accept {
					t.Fatalf("step %d: Check(%d) = %v, want %v (last %d)", i, s.seq, got, s.accept, w.Last())
				}
				if got {
					w.Accept(s.seq)
				}
			}
		})
	}
}

// TestWindowMatchesModel checks the ring against a plain set of accepted
// numbers over random sequences with reordering and jumps.
func TestWindowMatchesModel(t *testing.T) {
	for _, size := range []int{64, 256, 1024} {
		w, _ := NewWindow(size)
		seen := map[uint64]bool{}
		var last uint64
		seq := uint64(1)
		x := uint64(0x9e3779b97f4a7c15)
		for i := 0; i < 200000; i++ {
			x ^= x << 13
			x ^= x >> 7
			x ^= x << 17
			switch x % 10 {
			case 0:
				seq += x % 3000
			case 1, 2, 3:
				if seq > uint64(size)+100 {
					seq -= x % uint64(size+100)
				}
			default:
				seq++
			}
			want := seq != 0 && !seen[seq] && (seq > last || last-seq < uint64(w.Size()))
			if got := w.Check(seq); got != want {
				t.Fatalf("size %d step %d: Check(%d) = %v, want %v (last %d)", size, i, seq, got, want, last)
			}
			if want {
				w.Accept(seq)
				seen[seq] = true
				last = max(last, seq)
			}
		}
	}
}

func TestInferESN(t *testing.T) {
	const W = 1024
	cases := []struct {
		last uint64
		seql uint32
		want uint64
		ok   bool
	}{
		{0, 1, 1, true},
		{0, 0xffffffff, 0, false},        // would be epoch -1
		{5000, 4000, 4000, true},         // case A, in window
		{5000, 3977, 3977, true},         // case A, left edge
		{5000, 3976, 1<<32 | 3976, true}, // case A, below: next epoch
		{0xfffffff0, 5, 1<<32 | 5, true}, // wrap into epoch 1
		{0xfffffff0, 0xffffffe0, 0xffffffe0, true},
		{1<<32 | 10, 0xfffffff0, 0xfffffff0, true}, // case B: previous epoch
		{1<<32 | 10, 20, 1<<32 | 20, true},         // case B: ahead
		{1<<32 | 10, 3, 1<<32 | 3, true},
		{1<<32 | 10, 0x80000000, 1<<32 | 0x80000000, true},
		{0xffffffff<<32 | 0xfffffff0, 3, 0, false}, // would overflow 64 bits
	}
	for _, c := range cases {
		w, _ := NewWindow(W)
		w.last = c.last
		got, ok := w.Infer(c.seql)
		if ok != c.ok || (ok && got != c.want) {
			t.Errorf("last %#x seql %#x: got %#x %v, want %#x %v", c.last, c.seql, got, ok, c.want, c.ok)
		}
	}
}

// TestESNWrapOpen runs packets across the 2^32 boundary with reordering.
func TestESNWrapOpen(t *testing.T) {
	o, in := pair(t, suites[1], true)
	o.SetSeq(1<<32 - 10)
	in.w.Accept(1<<32 - 10)
	var pkts [][]byte
	for i := 0; i < 20; i++ {
		p, _ := o.Seal(nil, []byte{byte(i)}, 17)
		pkts = append(pkts, p)
	}
	for _, i := range []int{12, 3, 19, 9, 10, 0} {
		_, _, seq, err := in.Open(append([]byte(nil), pkts[i]...))
		if err != nil || seq != 1<<32-10+uint64(i)+1 {
			t.Fatalf("packet %d: seq %#x %v", i, seq, err)
		}
	}
	if _, _, _, err := in.Open(pkts[9]); err == nil {
		t.Fatal("replay accepted after wrap")
	}
}
