// Service is a JVM service shaped like a real one, for recording memory
// traces (see ../goservice for the same shape in Go): a live index, requests
// at a load that swings over a 20-minute cycle, each allocating short-lived
// buffers and filling an LRU cache that then evicts, and batch bursts every
// 5-9 minutes that hold 48 MiB for a minute or so. With a leak rate > 0 it
// keeps that many bytes a second, from leakAfter seconds on, in a list it
// never frees. It sleeps between requests, so it uses little CPU.
//
//   java -XX:+UseG1GC -Xmx1g Service <liveMiB> <cacheMiB> <leakRate> <leakAfterSeconds>
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;

public class Service {
    static final int MIB = 1 << 20;

    static byte[] fill(int n, int seed) {
        byte[] b = new byte[n];
        for (int i = 0; i < n; i++) b[i] = (byte) (seed + i);
        return b;
    }

    public static void main(String[] args) throws Exception {
        int liveMiB = Integer.parseInt(args[0]);
        final long cacheBytes = (long) Integer.parseInt(args[1]) * MIB;
        long leakRate = Long.parseLong(args[2]);
        double leakAfter = Double.parseDouble(args[3]);
        Random rnd = new Random();

        long start = System.nanoTime();
        List<byte[]> index = new ArrayList<>();
        for (int i = 0; i < liveMiB * (MIB / 2048); i++) index.add(fill(2048, i));
        System.out.printf("index of %d MiB built%n", liveMiB);

        final long[] cacheSize = {0};
        LinkedHashMap<Integer, byte[]> cache = new LinkedHashMap<>(16, 0.75f, true) {
            @Override
            protected boolean removeEldestEntry(Map.Entry<Integer, byte[]> e) {
                if (cacheSize[0] > cacheBytes) {
                    cacheSize[0] -= e.getValue().length;
                    return true;
                }
                return false;
            }
        };
        List<byte[]> leaked = new ArrayList<>();
        List<byte[]> burst = null;
        double burstEnd = 0, nextBurst = 300 + rnd.nextInt(300);
        double leakDebt = 0, lastLeak = 0;
        int key = 0;
        long sink = 0;
        while (true) {
            double el = (System.nanoTime() - start) / 1e9;
            double rate = Math.max(1, 8 + 4 * Math.sin(2 * Math.PI * el / 1200) + rnd.nextGaussian());
            byte[] tmp = fill(32 * 1024 + rnd.nextInt(64 * 1024), key);
            sink += tmp[tmp.length - 1] + index.get(rnd.nextInt(index.size())).length;
            int k = key - rnd.nextInt(20000);
            if (cache.get(k) == null) {
                byte[] body = fill(8 * 1024, key);
                cacheSize[0] += body.length;
                cache.put(key, body);
                key++;
            }
            if (burst == null && el > nextBurst) {
                burst = new ArrayList<>();
                for (int i = 0; i < 48; i++) burst.add(fill(MIB, i));
                burstEnd = el + 40 + rnd.nextInt(60);
            } else if (burst != null && el > burstEnd) {
                burst = null;
                nextBurst = el + 300 + rnd.nextInt(240);
            }
            if (leakRate > 0 && el >= leakAfter) {
                leakDebt += leakRate * (el - lastLeak);
                while (leakDebt >= 4096) {
                    leaked.add(fill(4096, leaked.size()));
                    leakDebt -= 4096;
                }
            }
            lastLeak = el;
            Thread.sleep((long) (1000 / rate));
            if (key % 20000 == 0) {
                System.out.printf("t=%.0fs cache=%d MiB leaked=%d MiB sink=%d%n", el, cacheSize[0] / MIB, (long) leaked.size() * 4096 / MIB, sink);
            }
        }
    }
}
