package qupath.ext.cellbridge.bridge;

import com.google.gson.JsonArray;
import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import org.junit.jupiter.api.Test;
import org.locationtech.jts.io.WKTReader;

import javax.imageio.ImageIO;
import java.awt.image.BufferedImage;
import java.io.ByteArrayInputStream;
import java.util.Base64;
import java.util.List;
import java.util.Set;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class JobRequestTest {

    @Test
    void pathBasedRequestMatchesTheProtocol() throws Exception {
        JobRequest request = JobRequest.nuclei("nuclei-he")
                .imagePath("/abs/slide.svs")
                .pixelSize(0.5)
                .region(0, 16, 4096, 2048)
                .roi(new WKTReader().read("POLYGON ((0 0, 100 0, 100 50, 0 0))"))
                .options(RunSettings.builder("nuclei-he").device("cpu").batchSize(4).tileSize(512).overlap(64)
                        .cellExpansion(5.0).threshold(0.4).tissue(true).measure(false).build().options())
                .build();
        JsonObject json = JsonParser.parseString(request.toJson()).getAsJsonObject();
        assertEquals(Set.of("protocol", "task", "model", "image", "region", "roi", "options"), json.keySet());
        assertEquals(1, json.get("protocol").getAsInt());
        assertEquals("nuclei", json.get("task").getAsString());
        assertEquals("nuclei-he", json.get("model").getAsString());
        JsonObject image = json.getAsJsonObject("image");
        assertEquals(Set.of("path", "pixelSize"), image.keySet());
        assertEquals("/abs/slide.svs", image.get("path").getAsString());
        assertEquals(0.5, image.get("pixelSize").getAsDouble());
        JsonObject region = json.getAsJsonObject("region");
        assertEquals(List.of(0, 16, 4096, 2048), List.of(region.get("x").getAsInt(), region.get("y").getAsInt(),
                region.get("width").getAsInt(), region.get("height").getAsInt()));
        assertEquals("{\"type\":\"Polygon\",\"coordinates\":[[[0,0],[100,0],[100,50],[0,0]]]}", json.get("roi").toString());
        JsonObject options = json.getAsJsonObject("options");
        assertEquals(Set.of("device", "batchSize", "tileSize", "overlap", "cellExpansion", "threshold", "tissue", "measure"),
                options.keySet());
        assertEquals("cpu", options.get("device").getAsString());
        assertEquals(4, options.get("batchSize").getAsInt());
        assertEquals(512, options.get("tileSize").getAsInt());
        assertEquals(64, options.get("overlap").getAsInt());
        assertEquals(5.0, options.get("cellExpansion").getAsDouble());
        assertEquals(0.4, options.get("threshold").getAsDouble());
        assertTrue(options.get("tissue").getAsBoolean());
        assertFalse(options.get("measure").getAsBoolean());
        assertFalse(request.isTileBased());
    }

    @Test
    void unsetOptionsAreLeftToTheServer() {
        JobRequest request = JobRequest.detect("/models/my-detector").imagePath("/a.tif").build();
        JsonObject json = JsonParser.parseString(request.toJson()).getAsJsonObject();
        assertEquals("detect", json.get("task").getAsString());
        assertEquals("/models/my-detector", json.get("model").getAsString());
        assertEquals(Set.of("protocol", "task", "model", "image", "options"), json.keySet());
        assertEquals(0, json.getAsJsonObject("options").size());
        assertEquals(JobRequest.Options.defaults(), request.options());
    }

    @Test
    void tileBasedRequestCarriesBase64Pngs() throws Exception {
        BufferedImage image = new BufferedImage(32, 16, BufferedImage.TYPE_INT_RGB);
        image.setRGB(3, 4, 0x123456);
        TileImage a = TileImage.fromImage(0, 0, 2.0, image);
        TileImage b = TileImage.of(64, 0, 64, 32, 2.0, TileImage.encodePng(image));
        assertEquals(64, a.width());
        assertEquals(32, a.height());
        JobRequest request = JobRequest.nuclei("nuclei-he").tiles(128, 32, List.of(a, b)).pixelSize(0.25).build();
        assertTrue(request.isTileBased());
        JsonObject json = JsonParser.parseString(request.toJson()).getAsJsonObject();
        assertEquals(Set.of("protocol", "task", "model", "image", "options", "tiles"), json.keySet());
        JsonObject imageJson = json.getAsJsonObject("image");
        assertEquals(Set.of("width", "height", "pixelSize"), imageJson.keySet());
        assertEquals(128, imageJson.get("width").getAsInt());
        assertEquals(32, imageJson.get("height").getAsInt());
        JsonArray tiles = json.getAsJsonArray("tiles");
        assertEquals(2, tiles.size());
        JsonObject tile = tiles.get(1).getAsJsonObject();
        assertEquals(Set.of("x", "y", "width", "height", "downsample", "png"), tile.keySet());
        assertEquals(64, tile.get("x").getAsInt());
        assertEquals(2.0, tile.get("downsample").getAsDouble());
        byte[] png = Base64.getDecoder().decode(tile.get("png").getAsString());
        assertArrayEquals(b.png(), png);
        BufferedImage decoded = ImageIO.read(new ByteArrayInputStream(png));
        assertEquals(32, decoded.getWidth());
        assertEquals(0x123456, decoded.getRGB(3, 4) & 0xFFFFFF);
    }

    @Test
    void tileImagesAreValuesAndImmutable() {
        byte[] bytes = {1, 2, 3};
        TileImage tile = TileImage.of(0, 0, 10, 10, 1.0, bytes);
        bytes[0] = 9;
        assertEquals(1, tile.png()[0]);
        tile.png()[1] = 9;
        assertEquals(2, tile.png()[1]);
        assertEquals(tile, TileImage.of(0, 0, 10, 10, 1.0, new byte[]{1, 2, 3}));
        assertEquals(tile.hashCode(), TileImage.of(0, 0, 10, 10, 1.0, new byte[]{1, 2, 3}).hashCode());
        assertNotEquals(tile, TileImage.of(0, 0, 10, 10, 2.0, new byte[]{1, 2, 3}));
        assertThrows(IllegalArgumentException.class, () -> TileImage.of(0, 0, 0, 10, 1.0, bytes));
        assertThrows(IllegalArgumentException.class, () -> TileImage.of(0, 0, 10, 10, 0, bytes));
        assertThrows(IllegalArgumentException.class, () -> TileImage.of(0, 0, 10, 10, 1, new byte[0]));
    }

    @Test
    void invalidRequestsAreRefusedBeforeSending() {
        TileImage tile = TileImage.of(0, 0, 10, 10, 1.0, new byte[]{1});
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> JobRequest.nuclei("m").build());
        assertEquals("a request needs an image path or tiles", e.getMessage());
        e = assertThrows(IllegalArgumentException.class,
                () -> JobRequest.nuclei("m").imagePath("/a").tiles(10, 10, List.of(tile)).build());
        assertEquals("a request has an image path or tiles, not both", e.getMessage());
        assertThrows(IllegalArgumentException.class, () -> JobRequest.nuclei("m").tiles(0, 10, List.of(tile)).build());
        assertThrows(IllegalArgumentException.class, () -> JobRequest.nuclei(" ").imagePath("/a").build());
        assertThrows(IllegalArgumentException.class, () -> JobRequest.nuclei("m").imagePath("/a").pixelSize(-1).build());
        assertThrows(IllegalArgumentException.class, () -> JobRequest.Region.of(0, 0, 0, 5));
    }

    @Test
    void optionsCanBeSetAtOnce() {
        JobRequest.Options options = new JobRequest.Options("cuda", 8, null, null, 2.5, null, false, null, null, null,
                null);
        JobRequest request = JobRequest.builder(JobRequest.Task.NUCLEI, "nuclei-he").imagePath("/a").options(options).build();
        assertEquals(options, request.options());
        JsonObject json = JsonParser.parseString(request.toJson()).getAsJsonObject().getAsJsonObject("options");
        assertEquals(Set.of("device", "batchSize", "cellExpansion", "tissue"), json.keySet());
    }

    @Test
    void ihcOptionsTravelAsTheProtocolNamesThem() {
        JobRequest request = JobRequest.nuclei("nuclei-he").imagePath("/a").options(RunSettings.builder("nuclei-he")
                .stain("ihc-dab").stainVectors("estimate").positivity(0.15, 0.35, 0.55).build().options()).build();
        JsonObject json = JsonParser.parseString(request.toJson()).getAsJsonObject().getAsJsonObject("options");
        assertEquals("ihc-dab", json.get("stain").getAsString());
        assertEquals("estimate", json.get("stainVectors").getAsString());
        assertEquals(List.of(0.15, 0.35, 0.55), json.getAsJsonArray("positivity").asList().stream()
                .map(e -> e.getAsDouble()).toList());
    }
}
