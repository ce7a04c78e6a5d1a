package qupath.ext.cellbridge.bridge;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class CountsTableTest {

    @Test
    void writesOneRowPerImageWithSortedClassColumnsAndReadsItBack(@TempDir Path dir) throws Exception {
        Path csv = dir.resolve("out/counts.csv");
        CountsTable table = new CountsTable()
                .put(CountsTable.Row.done("p1", "a, \"b\".svs", "1", "nuclei-he", "abc", 1.5,
                        Map.of("Tumor", 3, "Stroma", 1)))
                .put(CountsTable.Row.failed("p1", "c.svs", "2", "nuclei-he", "image file c.svs does not exist"));
        table.write(csv);
        List<String> lines = Files.readAllLines(csv, StandardCharsets.UTF_8);
        assertEquals("project,image,image_id,status,objects,model,signature,seconds,error,Stroma,Tumor", lines.get(0));
        assertEquals("p1,\"a, \"\"b\"\".svs\",1,done,4,nuclei-he,abc,1.50,,1,3", lines.get(1));
        assertEquals("p1,c.svs,2,failed,,nuclei-he,,,image file c.svs does not exist,,", lines.get(2));
        try (var files = Files.list(csv.getParent())) {
            assertEquals(1, files.count(), "no temporary file is left");
        }

        CountsTable again = CountsTable.read(csv);
        assertEquals(table.rows(), again.rows());
        assertTrue(again.isDone("p1", "1", "abc"));
        assertFalse(again.isDone("p1", "1", "other"));
        assertFalse(again.isDone("p1", "2", ""));
        again.put(again.get("p1", "1").skipped());
        assertEquals(CountsTable.SKIPPED, again.rows().get(0).status());
        assertEquals(2, again.rows().size());
    }

    @Test
    void missingFileIsEmptyAndAForeignCsvIsRefused(@TempDir Path dir) throws Exception {
        assertTrue(CountsTable.read(dir.resolve("none.csv")).rows().isEmpty());
        Path other = Files.writeString(dir.resolve("other.csv"), "a,b\n1,2\n");
        assertTrue(assertThrows(CellBridgeException.class, () -> CountsTable.read(other)).getMessage()
                .contains("not a CellBridge counts table"));
    }

    @Test
    void parsesQuotedFieldsWithLineBreaks() {
        assertEquals(List.of(List.of("a", "b\nc", ""), List.of("d")), CountsTable.parse("a,\"b\nc\",\r\nd"));
    }
}
