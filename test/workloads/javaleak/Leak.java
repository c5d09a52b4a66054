// Leak is the JVM workload of leakwatch's tests: every 100 ms it keeps
// RETAIN_KIB more KiB alive in a list and drops GARBAGE_KIB of short-lived
// arrays, so that the heap grows under garbage-collection cycles until -Xmx
// runs out (run it with -XX:+ExitOnOutOfMemoryError to end there). It
// prints nothing and reads nothing: tests start it in its own memory cgroup
// and end it by its pid.
//
//	java -XX:+UseG1GC -Xmx1g Leak RETAIN_KIB GARBAGE_KIB
import java.util.ArrayList;
import java.util.List;

public class Leak {
    static final int CHUNK = 64 << 10;
    static final List<byte[]> retained = new ArrayList<>();
    static volatile byte[] last;

    public static void main(String[] args) throws InterruptedException {
        int retainKiB = Integer.parseInt(args[0]);
        int garbageKiB = Integer.parseInt(args[1]);
        long next = System.nanoTime();
        for (;;) {
            for (int kib = 0; kib < retainKiB; kib += CHUNK >> 10) {
                byte[] b = new byte[CHUNK];
                b[b.length - 1] = 1;
                retained.add(b);
            }
            for (int kib = 0; kib < garbageKiB; kib += 8) {
                last = new byte[8 << 10];
            }
            // A fixed rate, whatever the time taken by the work above.
            next += 100_000_000L;
            long wait = next - System.nanoTime();
            if (wait > 0) {
                Thread.sleep(wait / 1_000_000L, (int) (wait % 1_000_000L));
            }
        }
    }
}
