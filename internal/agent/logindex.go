package agent

import (
	"encoding/binary"
	"io"
	"math"
	"os"
	"time"
)

// The times of the main command's output live beside the log, on disk, so
// that the agent holds none of them in memory and the host can read them
// after the agent is gone: LogFile+indexSuffix ("main.log.idx") holds one
// record per write of the main command, rotated with the log to
// "main.log.1.idx". A record is the offset in the log file where the write
// starts and the time the agent read it, both little-endian int64 (Unix
// nanoseconds for the time). Offsets and times only grow.
//
// The index shares the log's bound: the writer rotates when the log and its
// index together reach the rotation size, so the disk bound (twice that
// size) is unchanged; output written in tiny pieces keeps less text.
const (
	indexSuffix = ".idx"
	indexRecord = 16
	// indexGrain is the resolution of the times: a write within indexGrain
	// of the last recorded one shares its time and adds no record, which
	// bounds the records a chatty command adds to 1000 a second.
	indexGrain = time.Millisecond
)

// indexName is the index of log file name.
func indexName(name string) string { return name + indexSuffix }

type indexEntry struct{ off, nano int64 }

func putEntry(b []byte, e indexEntry) {
	binary.LittleEndian.PutUint64(b, uint64(e.off))
	binary.LittleEndian.PutUint64(b[8:], uint64(e.nano))
}

// readEntry reads record k of idx; ok is false past its end.
func readEntry(idx *os.File, k int64) (e indexEntry, ok bool, err error) {
	var b [indexRecord]byte
	n, err := idx.ReadAt(b[:], k*indexRecord)
	if n < indexRecord {
		if err == io.EOF || err == nil {
			return e, false, nil
		}
		return e, false, err
	}
	return indexEntry{int64(binary.LittleEndian.Uint64(b[:])), int64(binary.LittleEndian.Uint64(b[8:]))}, true, nil
}

// indexLen is the number of whole records in idx.
func indexLen(idx *os.File) (int64, error) {
	fi, err := idx.Stat()
	if err != nil {
		return 0, err
	}
	return fi.Size() / indexRecord, nil
}

// searchIndex returns the first record k in [0, n) for which less(e_k) is
// false (n if none), reading O(log n) records.
func searchIndex(idx *os.File, n int64, less func(indexEntry) bool) (int64, error) {
	lo, hi := int64(0), n
	for lo < hi {
		m := lo + (hi-lo)/2
		e, ok, err := readEntry(idx, m)
		if err != nil {
			return 0, err
		}
		if ok && less(e) {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo, nil
}

// indexCursor walks the records of one log file alongside its reading: cur
// is the record holding the byte being read, next the one after it.
type indexCursor struct {
	idx     *os.File // nil: the file has no index, its times are unknown
	k       int64    // record number of next
	cur     indexEntry
	hasCur  bool
	next    indexEntry
	hasNext bool
}

// seek positions the cursor on the record holding byte off.
func (c *indexCursor) seek(off int64) error {
	*c = indexCursor{idx: c.idx}
	if c.idx == nil {
		return nil
	}
	n, err := indexLen(c.idx)
	if err != nil {
		return err
	}
	k, err := searchIndex(c.idx, n, func(e indexEntry) bool { return e.off <= off })
	if err != nil {
		return err
	}
	if k > 0 {
		if c.cur, c.hasCur, err = readEntry(c.idx, k-1); err != nil {
			return err
		}
	}
	c.k = k
	return c.load()
}

// load reads record k into next, if it is there yet.
func (c *indexCursor) load() error {
	if c.hasNext || c.idx == nil {
		return nil
	}
	e, ok, err := readEntry(c.idx, c.k)
	if err != nil {
		return err
	}
	c.next, c.hasNext = e, ok
	return nil
}

// at moves the cursor to byte off and returns its time (0 when unknown)
// and where the write holding it ends (-1: not known yet).
func (c *indexCursor) at(off int64) (nano, end int64, err error) {
	if c.idx == nil {
		return 0, -1, nil
	}
	for {
		if err := c.load(); err != nil {
			return 0, -1, err
		}
		if !c.hasNext || c.next.off > off {
			break
		}
		c.cur, c.hasCur, c.hasNext = c.next, true, false
		c.k++
	}
	end = -1
	if c.hasNext {
		end = c.next.off
	}
	if c.hasCur {
		nano = c.cur.nano
	}
	return nano, end, nil
}

// sinceOffset returns where the first write at or after since starts in the
// log file of idx; ok is false when every recorded write is older.
func sinceOffset(idx *os.File, since int64) (off int64, ok bool, err error) {
	if idx == nil {
		return 0, false, nil
	}
	n, err := indexLen(idx)
	if err != nil {
		return 0, false, err
	}
	k, err := searchIndex(idx, n, func(e indexEntry) bool { return e.nano < since })
	if err != nil || k == n {
		return 0, false, err
	}
	e, ok, err := readEntry(idx, k)
	return e.off, ok, err
}

// lastEntry returns idx's last record, if any.
func lastEntry(idx *os.File) (indexEntry, bool) {
	n, err := indexLen(idx)
	if err != nil || n == 0 {
		return indexEntry{}, false
	}
	e, ok, _ := readEntry(idx, n-1)
	return e, ok
}

// sinceNano is LogOptions.Since in Unix ns; 0 (no filter) for the zero time
// or any time before 1970, and the largest int64 past 2262 (which UnixNano
// cannot hold).
func sinceNano(t time.Time) int64 {
	switch {
	case t.IsZero() || t.Before(time.Unix(0, 0)):
		return 0
	case t.After(time.Unix(0, math.MaxInt64)):
		return math.MaxInt64
	}
	return t.UnixNano()
}

// timeOfNano is the time of Unix ns n; zero for 0 (unknown).
func timeOfNano(n int64) time.Time {
	if n <= 0 {
		return time.Time{}
	}
	return time.Unix(0, n)
}
