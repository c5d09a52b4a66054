package series

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/leakwatch/leakwatch/pkg/fifo"
)

// stateVersion numbers the layout MarshalBinary writes; UnmarshalBinary
// refuses any other.
const stateVersion = 1

// pointBytes is the encoded size of a point.
const pointBytes = 40

// MarshalBinary encodes the history: its bucket width, the raw and the
// downsampled points oldest first (a raw point as a downsampled one whose
// minimum and maximum are its signal), and the bucket being filled.
func (h *History) MarshalBinary() ([]byte, error) {
	buf := make([]byte, 0, 1+8+2*8+(h.raw.Len()+h.coarse.Len()+1)*pointBytes+1)
	buf = append(buf, stateVersion)
	buf = binary.LittleEndian.AppendUint64(buf, uint64(h.bucket))
	buf = binary.LittleEndian.AppendUint64(buf, uint64(h.raw.Len()))
	for i := range h.raw.Len() {
		buf = appendPoint(buf, h.raw.At(i).point())
	}
	buf = binary.LittleEndian.AppendUint64(buf, uint64(h.coarse.Len()))
	for i := range h.coarse.Len() {
		buf = appendPoint(buf, h.coarse.At(i))
	}
	if h.filling {
		buf = append(buf, 1)
		buf = appendPoint(buf, h.pending)
	} else {
		buf = append(buf, 0)
	}
	return buf, nil
}

// UnmarshalBinary restores a history written by MarshalBinary into one made
// by New with the same bucket width. Sizes may differ: the newest points
// that fit are kept. It checks every count, flag and time order and refuses
// trailing bytes; on error the history is left as it was.
func (h *History) UnmarshalBinary(data []byte) error {
	if err := h.unmarshal(data); err != nil {
		return fmt.Errorf("decoding series history: %w", err)
	}
	return nil
}

func (h *History) unmarshal(data []byte) error {
	if len(data) < 1+8 {
		return errors.New("truncated")
	}
	if data[0] != stateVersion {
		return fmt.Errorf("version %d, want %d", data[0], stateVersion)
	}
	if b := time.Duration(binary.LittleEndian.Uint64(data[1:])); b != h.bucket {
		return fmt.Errorf("bucket %v, want %v", b, h.bucket)
	}
	data = data[9:]
	n := History{bucket: h.bucket, raw: fifo.New[rawPoint](h.raw.Bound()), coarse: fifo.New[point](h.coarse.Bound())}
	var err error
	data, err = readPoints(data, func(p point) error {
		if p.lo != p.signal || p.hi != p.signal {
			return errors.New("a raw point with a range")
		}
		n.raw.Push(rawPoint{t: p.t, signal: p.signal, usage: p.usage})
		return nil
	})
	if err != nil {
		return err
	}
	data, err = readPoints(data, func(p point) error {
		n.coarse.Push(p)
		return nil
	})
	if err != nil {
		return err
	}
	if len(data) < 1 {
		return errors.New("truncated")
	}
	switch data[0] {
	case 0:
		data = data[1:]
	case 1:
		if len(data) < 1+pointBytes {
			return errors.New("truncated")
		}
		n.pending, n.filling = readPoint(data[1:]), true
		data = data[1+pointBytes:]
	default:
		return fmt.Errorf("flag %d: want 0 or 1", data[0])
	}
	if len(data) > 0 {
		return fmt.Errorf("%d trailing bytes", len(data))
	}
	*h = n
	return nil
}

// readPoints decodes a count and that many points in time order, handing
// each to add, and returns the rest of data.
func readPoints(data []byte, add func(point) error) ([]byte, error) {
	if len(data) < 8 {
		return nil, errors.New("truncated")
	}
	count := binary.LittleEndian.Uint64(data)
	data = data[8:]
	if count > uint64(len(data)/pointBytes) {
		return nil, fmt.Errorf("%d points in %d bytes", count, len(data))
	}
	last := int64(-1 << 63)
	for range count {
		p := readPoint(data)
		data = data[pointBytes:]
		if p.t < last {
			return nil, errors.New("points out of time order")
		}
		last = p.t
		if err := add(p); err != nil {
			return nil, err
		}
	}
	return data, nil
}

func appendPoint(buf []byte, p point) []byte {
	buf = binary.LittleEndian.AppendUint64(buf, uint64(p.t))
	for _, v := range []uint64{p.signal, p.usage, p.lo, p.hi} {
		buf = binary.LittleEndian.AppendUint64(buf, v)
	}
	return buf
}

// readPoint decodes pointBytes bytes; the caller checks the length.
func readPoint(b []byte) point {
	u := func(i int) uint64 { return binary.LittleEndian.Uint64(b[8*i:]) }
	return point{t: int64(u(0)), signal: u(1), usage: u(2), lo: u(3), hi: u(4)}
}
