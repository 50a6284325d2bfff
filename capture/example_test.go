package capture_test

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/espy-dpi/espy/capture"
)

func ExampleReader() {
	f, err := os.Open("testdata/nano_be.pcap")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer f.Close()
	r, err := capture.NewReader("nano_be.pcap", f)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(r.Format())
	for {
		p, err := r.Next()
		if err == io.EOF {
			break
		}
		if errors.Is(err, capture.ErrTruncated) {
			// A capture cut short, e.g. by a full disk: report it and
			// keep what was read.
			fmt.Println(err)
			break
		}
		if err != nil {
			fmt.Println(err)
			return
		}
		fmt.Printf("%s link %d: %d of %d bytes at offset %d\n",
			p.Timestamp.Format("15:04:05.000000000"), p.LinkType, p.CaptureLength, p.Length, r.Offset())
	}
	// Output:
	// pcap
	// 22:13:20.000000001 link 113: 44 of 44 bytes at offset 24
	// 22:13:20.999999999 link 113: 96 of 1500 bytes at offset 84
}
