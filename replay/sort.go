package replay

import (
	"bytes"
	"cmp"
	"slices"

	"github.com/espy-dpi/espy/flowcache"
)

// sortFlows orders flows by first packet, then key, so output is stable
// whatever the cache's iteration order.
func sortFlows[T any](s []T, by func(T) (int64, flowcache.Key)) {
	slices.SortFunc(s, func(x, y T) int {
		tx, kx := by(x)
		ty, ky := by(y)
		if c := cmp.Compare(tx, ty); c != 0 {
			return c
		}
		if c := bytes.Compare(kx.Src[:], ky.Src[:]); c != 0 {
			return c
		}
		if c := bytes.Compare(kx.Dst[:], ky.Dst[:]); c != 0 {
			return c
		}
		return cmp.Compare(kx.SPI, ky.SPI)
	})
}
