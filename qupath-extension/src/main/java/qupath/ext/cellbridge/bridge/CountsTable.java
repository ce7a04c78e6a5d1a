package qupath.ext.cellbridge.bridge;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.AtomicMoveNotSupportedException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.ArrayList;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Objects;
import java.util.TreeMap;
import java.util.TreeSet;

/**
 * The batch summary table: one CSV row per image with its object counts per class, rewritten atomically (to a
 * temporary file beside it, then renamed). The same columns as {@code cellbridge batch} writes
 * ({@code cellbridge.batch.counts}): {@code project, image, image_id, status, objects, model, signature, seconds,
 * error}, then one column per class name, sorted.
 * <pre>{@code
 * CountsTable table = CountsTable.read(csv);
 * if (!table.isDone(project, imageId, signature)) { ...; table.put(CountsTable.Row.done(...)); table.write(csv); }
 * }</pre>
 * Not thread-safe; the scripts use one table from one thread.
 */
public final class CountsTable {

    /** The columns before the class columns. */
    public static final List<String> FIXED_COLUMNS = List.of("project", "image", "image_id", "status", "objects",
            "model", "signature", "seconds", "error");

    /** Status of an image run now. */
    public static final String DONE = "done";
    /** Status of an image done before with the same model and parameters. */
    public static final String SKIPPED = "skipped";
    /** Status of an image that failed ({@code error} says why). */
    public static final String FAILED = "failed";

    /**
     * One image's outcome.
     *
     * @param project the project's name
     * @param image the image's name
     * @param imageId the image's entry ID in the project
     * @param status {@link #DONE}, {@link #SKIPPED} or {@link #FAILED}
     * @param model the model name
     * @param signature the run's {@link RunSettings#signature signature} (empty for failures)
     * @param seconds how long the image took, or null
     * @param error why it failed, or empty
     * @param counts objects per class name (unmodifiable, sorted by name)
     */
    public record Row(String project, String image, String imageId, String status, String model, String signature,
                      Double seconds, String error, Map<String, Integer> counts) {

        /** Replaces nulls by empty values and copies the counts. */
        public Row {
            project = Objects.requireNonNullElse(project, "");
            image = Objects.requireNonNullElse(image, "");
            imageId = Objects.requireNonNullElse(imageId, "");
            status = Objects.requireNonNullElse(status, "");
            model = Objects.requireNonNullElse(model, "");
            signature = Objects.requireNonNullElse(signature, "");
            error = Objects.requireNonNullElse(error, "");
            counts = counts == null ? Map.of() : Collections.unmodifiableMap(new TreeMap<>(counts));
        }

        /**
         * @param project project name
         * @param image image name
         * @param imageId entry ID
         * @param model model name
         * @param signature run signature
         * @param seconds time taken, or null
         * @param counts objects per class
         * @return a row for an image run now
         */
        public static Row done(String project, String image, String imageId, String model, String signature,
                               Double seconds, Map<String, Integer> counts) {
            return new Row(project, image, imageId, DONE, model, signature, seconds, "", counts);
        }

        /**
         * @param project project name
         * @param image image name
         * @param imageId entry ID
         * @param model model name
         * @param error why it failed
         * @return a row for a failed image
         */
        public static Row failed(String project, String image, String imageId, String model, String error) {
            return new Row(project, image, imageId, FAILED, model, "", null, error, Map.of());
        }

        /** @return this row with status {@link #SKIPPED} */
        public Row skipped() {
            return new Row(project, image, imageId, SKIPPED, model, signature, seconds, error, counts);
        }

        /** @return all objects of the image */
        public int objects() {
            return counts.values().stream().mapToInt(Integer::intValue).sum();
        }

        String key() {
            return project + "\u0000" + imageId;
        }
    }

    private final Map<String, Row> rows = new LinkedHashMap<>();

    /** An empty table. */
    public CountsTable() {
    }

    /**
     * @param file a table written by {@link #write} or by {@code cellbridge batch}
     * @return its rows, or an empty table when the file does not exist
     * @throws CellBridgeException if it cannot be read or is not such a table
     */
    public static CountsTable read(Path file) {
        CountsTable table = new CountsTable();
        if (!Files.isRegularFile(file))
            return table;
        List<List<String>> records;
        try {
            records = parse(Files.readString(file, StandardCharsets.UTF_8));
        } catch (IOException e) {
            throw new CellBridgeException(file + ": cannot read the counts table: " + e.getMessage(), e);
        }
        if (records.isEmpty())
            return table;
        List<String> header = records.get(0);
        if (!header.containsAll(FIXED_COLUMNS))
            throw new CellBridgeException(file + ": not a CellBridge counts table (its header lacks "
                    + FIXED_COLUMNS.stream().filter(c -> !header.contains(c)).toList() + ")");
        for (int r = 1; r < records.size(); r++) {
            List<String> record = records.get(r);
            Map<String, String> values = new LinkedHashMap<>();
            for (int c = 0; c < header.size(); c++)
                values.put(header.get(c), c < record.size() ? record.get(c) : "");
            Map<String, Integer> counts = new TreeMap<>();
            for (Map.Entry<String, String> e : values.entrySet()) {
                if (!FIXED_COLUMNS.contains(e.getKey()) && !e.getValue().isBlank()) {
                    try {
                        counts.put(e.getKey(), Integer.parseInt(e.getValue().strip()));
                    } catch (NumberFormatException ex) {
                        throw new CellBridgeException(file + ": row " + r + ": count '" + e.getValue() + "' for class '"
                                + e.getKey() + "' is not a whole number");
                    }
                }
            }
            String seconds = values.get("seconds");
            Double time = null;
            if (seconds != null && !seconds.isBlank()) {
                try {
                    time = Double.parseDouble(seconds.strip());
                } catch (NumberFormatException e) {
                    time = null;
                }
            }
            table.put(new Row(values.get("project"), values.get("image"), values.get("image_id"), values.get("status"),
                    values.get("model"), values.get("signature"), time, values.get("error"), counts));
        }
        return table;
    }

    /**
     * Add or replace the row of the row's project and image ID.
     * @param row the row
     * @return this table
     */
    public CountsTable put(Row row) {
        rows.put(row.key(), Objects.requireNonNull(row));
        return this;
    }

    /**
     * @param project project name
     * @param imageId entry ID
     * @return the image's row, or null
     */
    public Row get(String project, String imageId) {
        return rows.get(project + "\u0000" + imageId);
    }

    /**
     * @param project project name
     * @param imageId entry ID
     * @param signature the run's signature
     * @return true when the image is done or skipped with this signature
     */
    public boolean isDone(String project, String imageId, String signature) {
        Row row = get(project, imageId);
        return row != null && !FAILED.equals(row.status()) && !row.signature().isEmpty()
                && row.signature().equals(signature);
    }

    /** @return all rows, in first-seen order */
    public List<Row> rows() {
        return List.copyOf(rows.values());
    }

    /** @return every class name of any row, sorted */
    public List<String> classes() {
        TreeSet<String> names = new TreeSet<>();
        for (Row row : rows.values())
            names.addAll(row.counts().keySet());
        return List.copyOf(names);
    }

    /** @return the table as CSV text ({@code \n} line ends, quotes where needed) */
    public String toCsv() {
        List<String> classes = classes();
        StringBuilder sb = new StringBuilder();
        List<String> header = new ArrayList<>(FIXED_COLUMNS);
        header.addAll(classes);
        appendRecord(sb, header);
        for (Row row : rows.values()) {
            List<String> record = new ArrayList<>();
            record.add(row.project());
            record.add(row.image());
            record.add(row.imageId());
            record.add(row.status());
            record.add(FAILED.equals(row.status()) ? "" : Integer.toString(row.objects()));
            record.add(row.model());
            record.add(row.signature());
            record.add(row.seconds() == null ? "" : String.format(Locale.ROOT, "%.2f", row.seconds()));
            record.add(row.error());
            for (String name : classes) {
                Integer n = row.counts().get(name);
                record.add(n == null ? "" : n.toString());
            }
            appendRecord(sb, record);
        }
        return sb.toString();
    }

    /**
     * Write the table: to a temporary file beside {@code file}, then renamed over it.
     * @param file the CSV file
     * @throws UncheckedIOException if it cannot be written
     */
    public void write(Path file) {
        Path target = file.toAbsolutePath();
        try {
            Files.createDirectories(target.getParent());
            Path tmp = Files.createTempFile(target.getParent(), "." + target.getFileName(), ".tmp");
            try {
                Files.writeString(tmp, toCsv(), StandardCharsets.UTF_8);
                try {
                    Files.move(tmp, target, StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
                } catch (AtomicMoveNotSupportedException e) {
                    Files.move(tmp, target, StandardCopyOption.REPLACE_EXISTING);
                }
            } finally {
                Files.deleteIfExists(tmp);
            }
        } catch (IOException e) {
            throw new UncheckedIOException("cannot write the counts table " + file + ": " + e.getMessage(), e);
        }
    }

    private static void appendRecord(StringBuilder sb, List<String> values) {
        for (int i = 0; i < values.size(); i++) {
            if (i > 0)
                sb.append(',');
            String v = values.get(i);
            if (v.indexOf(',') >= 0 || v.indexOf('"') >= 0 || v.indexOf('\n') >= 0 || v.indexOf('\r') >= 0)
                sb.append('"').append(v.replace("\"", "\"\"")).append('"');
            else
                sb.append(v);
        }
        sb.append('\n');
    }

    /** RFC 4180 records (quoted fields may hold commas, quotes and line breaks). */
    static List<List<String>> parse(String text) {
        if (text.startsWith("\uFEFF"))
            text = text.substring(1);
        List<List<String>> records = new ArrayList<>();
        List<String> record = new ArrayList<>();
        StringBuilder field = new StringBuilder();
        boolean quoted = false;
        boolean any = false;
        for (int i = 0; i < text.length(); i++) {
            char c = text.charAt(i);
            if (quoted) {
                if (c == '"') {
                    if (i + 1 < text.length() && text.charAt(i + 1) == '"') {
                        field.append('"');
                        i++;
                    } else {
                        quoted = false;
                    }
                } else {
                    field.append(c);
                }
                continue;
            }
            switch (c) {
                case '"' -> {
                    quoted = true;
                    any = true;
                }
                case ',' -> {
                    record.add(field.toString());
                    field.setLength(0);
                    any = true;
                }
                case '\r' -> {
                }
                case '\n' -> {
                    record.add(field.toString());
                    field.setLength(0);
                    records.add(record);
                    record = new ArrayList<>();
                    any = false;
                }
                default -> {
                    field.append(c);
                    any = true;
                }
            }
        }
        if (any || field.length() > 0) {
            record.add(field.toString());
            records.add(record);
        }
        return records;
    }
}
