package qupath.ext.cellbridge.bridge;

import com.google.gson.JsonArray;
import com.google.gson.JsonElement;
import com.google.gson.JsonNull;
import com.google.gson.JsonObject;
import com.google.gson.JsonParseException;
import com.google.gson.JsonParser;
import com.google.gson.JsonPrimitive;

import java.util.ArrayList;
import java.util.List;

/**
 * Small Gson helpers shared by the bridge: parsing, envelopes and typed field access with clear errors.
 */
final class Json {

    private static final int SHORT = 60;

    private Json() {
    }

    /** Parse JSON text (Gson's lenient parser, so a bare {@code NaN} is accepted as QuPath does). */
    static JsonElement parse(String text, String what) {
        if (text == null)
            throw new CellBridgeException(what + " is missing (null)");
        try {
            return JsonParser.parseString(text);
        } catch (JsonParseException e) {
            throw new CellBridgeException(what + " is not valid JSON: " + rootMessage(e), e);
        }
    }

    /**
     * The value of a protocol envelope, or a {@link CellBridgeException} carrying the server's error unchanged.
     * @param reply the envelope string a {@link CellBridgeService} method returned
     * @param call the call's name, for messages about malformed replies
     * @return the value (JsonNull when the value is null or absent)
     */
    static JsonElement unwrap(String reply, String call) {
        if (reply == null)
            throw new CellBridgeException("the CellBridge server sent no reply to " + call);
        JsonElement element = parse(reply, "the CellBridge server's reply to " + call);
        if (!element.isJsonObject() || !isBoolean(element.getAsJsonObject().get("ok")))
            throw new CellBridgeException("the CellBridge server's reply to " + call
                    + " is not an envelope with \"ok\": " + shorten(reply));
        JsonObject envelope = element.getAsJsonObject();
        if (envelope.get("ok").getAsBoolean()) {
            JsonElement value = envelope.get("value");
            return value == null ? JsonNull.INSTANCE : value;
        }
        JsonElement error = envelope.get("error");
        String message = error == null || error.isJsonNull() ? "the CellBridge server reported an error in " + call
                + " without a message" : error.isJsonPrimitive() ? error.getAsString() : error.toString();
        JsonElement type = envelope.get("type");
        String typeName = type != null && type.isJsonPrimitive() ? type.getAsString() : null;
        throw new CellBridgeException(message, typeName, null);
    }

    static boolean isBoolean(JsonElement e) {
        return e != null && e.isJsonPrimitive() && e.getAsJsonPrimitive().isBoolean();
    }

    static boolean isNumber(JsonElement e) {
        return e != null && e.isJsonPrimitive() && e.getAsJsonPrimitive().isNumber();
    }

    static boolean isString(JsonElement e) {
        return e != null && e.isJsonPrimitive() && e.getAsJsonPrimitive().isString();
    }

    static boolean isMissing(JsonElement e) {
        return e == null || e.isJsonNull();
    }

    static JsonObject object(JsonElement e, String where) {
        return require(e, e != null && e.isJsonObject(), where, "a JSON object").getAsJsonObject();
    }

    static JsonArray array(JsonElement e, String where) {
        return require(e, e != null && e.isJsonArray(), where, "a JSON array").getAsJsonArray();
    }

    static String string(JsonObject o, String key, String where) {
        JsonElement e = o.get(key);
        return require(e, isString(e), where + "." + key, "a string").getAsString();
    }

    /** A string, a number as text, or null when absent. */
    static String optionalText(JsonObject o, String key, String where) {
        JsonElement e = o.get(key);
        return isMissing(e) ? null : require(e, e.isJsonPrimitive(), where + "." + key, "a string").getAsString();
    }

    static double number(JsonObject o, String key, String where) {
        JsonElement e = o.get(key);
        return require(e, isNumber(e), where + "." + key, "a number").getAsDouble();
    }

    /** @return {@code e} when {@code accepted}, else an error saying that {@code where} must be {@code what} */
    private static JsonElement require(JsonElement e, boolean accepted, String where, String what) {
        if (!accepted)
            throw new CellBridgeException(where + " must be " + what + ", not " + kind(e));
        return e;
    }

    static Double optionalNumber(JsonObject o, String key, String where) {
        JsonElement e = o.get(key);
        return isMissing(e) ? null : number(o, key, where);
    }

    static int integer(JsonObject o, String key, String where) {
        double value = number(o, key, where);
        if (value != Math.rint(value) || Math.abs(value) > Integer.MAX_VALUE)
            throw new CellBridgeException(where + "." + key + " must be an integer, not " + value);
        return (int) value;
    }

    static List<String> strings(JsonObject o, String key, String where) {
        JsonElement e = o.get(key);
        List<String> result = new ArrayList<>();
        if (isMissing(e))
            return List.of();
        for (JsonElement item : array(e, where + "." + key)) {
            if (!item.isJsonPrimitive())
                throw new CellBridgeException(where + "." + key + " must hold strings, not " + kind(item));
            result.add(item.getAsString());
        }
        return List.copyOf(result);
    }

    static JsonElement numberOrNull(Number value) {
        return value == null ? JsonNull.INSTANCE : new JsonPrimitive(value);
    }

    /** What a JSON value is, for error messages: "a string", "null", "an object", ... */
    static String kind(JsonElement e) {
        if (e == null)
            return "missing";
        if (e.isJsonNull())
            return "null";
        if (e.isJsonObject())
            return "an object";
        if (e.isJsonArray())
            return "an array";
        JsonPrimitive p = e.getAsJsonPrimitive();
        if (p.isBoolean())
            return "a boolean (" + p.getAsBoolean() + ")";
        if (p.isNumber())
            return "a number (" + p.getAsString() + ")";
        return "a string (" + shorten("\"" + p.getAsString() + "\"") + ")";
    }

    static String shorten(String text) {
        return text.length() <= SHORT ? text : text.substring(0, SHORT - 3) + "...";
    }

    private static String rootMessage(Throwable e) {
        Throwable t = e;
        while (t.getCause() != null && t.getCause() != t)
            t = t.getCause();
        return t.getMessage() == null ? t.getClass().getSimpleName() : t.getMessage();
    }
}
