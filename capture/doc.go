// Package capture reads packet captures as a stream: classic pcap and
// pcapng, from files, pipes or stdin.
//
// # Formats
//
// Classic pcap is read in all four variants: microsecond (magic a1b2c3d4)
// and nanosecond (a1b23c4d) timestamps, each in either byte order. Only
// version 2.x headers are accepted, as libpcap does. The modified pcap
// format (magic a1b2cd34) is refused with a message saying so.
//
// pcapng (version 1.x) is read in either byte order, with any number of
// sections, each of which may change the byte order and starts afresh with
// no interfaces. Every interface description keeps its own link type,
// snapshot length, timestamp resolution (if_tsresol, powers of ten up to
// 10^-19 and powers of two up to 2^-63) and timestamp offset (if_tsoffset).
// Enhanced, simple and obsolete packet blocks yield packets; simple packet
// blocks carry no timestamp, so their Timestamp is the zero time. All other
// blocks (statistics, name resolution, decryption secrets, custom) are
// skipped unread, whatever their size; note that tshark lists custom blocks
// as frames, so its frame count can exceed ours on such files.
//
// The format is told from the first four bytes, read through a
// bufio.Reader, so the input need not be seekable. To read several files in
// sequence, open each and make a Reader for it.
//
// # Limits
//
// A record whose captured length exceeds MaxCaptureLength (262144 bytes,
// libpcap's largest snapshot length) or the packet's original length is
// corrupt (a captured length over the file's snapshot length is accepted,
// as libpcap and Wireshark accept it): the reader stops there rather than
// allocate what a damaged length field asks for. A pcapng interface
// description block may be at most 270336 bytes, and a section may describe
// at most MaxInterfaces interfaces. Memory is one read buffer of 264 KiB
// per Reader (plus, for packet blocks too big for it, one 256 KiB copy),
// however large the capture. Next does not allocate: Packet.Data points
// into the read buffer and is valid until the next call to Next.
//
// Link types are reported, not judged: a packet of an unknown LINKTYPE_ is
// returned like any other, and the caller decides what to do with it.
//
// # Errors
//
// A fault is returned as an *Error, which names the file, the byte offset
// of the start of the faulty record or header, and the 1-based record
// number (for pcapng, the block number, the first section header being
// block 1; record 0 is the pcap file header). Its message is one line:
//
//	capture: dev.pcap: offset 123456 (record 812): captured length 4294967295 exceeds limit 262144
//	capture: cut.pcapng: offset 2048 (record 9): truncated enhanced packet block: 60 of 96 bytes
//	capture: notes.txt: offset 0: not a pcap or pcapng file (first bytes 68 65 6c 6c)
//	capture: empty.pcap: offset 0: empty file
//
// errors.Is matches it against ErrEmpty (no bytes at all), ErrNotCapture
// (unknown magic or unsupported version), ErrTruncated (the input ended
// inside a header or record) or ErrCorruptRecord (impossible lengths,
// mismatched pcapng block lengths, an undefined interface, a bad option).
// A read error from the underlying reader is wrapped as it is. After an
// error, Next returns the same error on every call. A clean end of input,
// after the last whole record, is io.EOF.
package capture
