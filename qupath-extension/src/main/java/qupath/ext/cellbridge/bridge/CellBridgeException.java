package qupath.ext.cellbridge.bridge;

/**
 * A CellBridge failure: an error reported by the Python server (its message is kept unchanged), a Python
 * environment that cannot run CellBridge, a server that cannot be started or reached, or malformed data.
 */
public class CellBridgeException extends RuntimeException {

    private static final long serialVersionUID = 1L;

    private final String pythonType;

    /**
     * An error with a message and no Python exception type.
     * @param message one clear sentence naming the problem
     */
    public CellBridgeException(String message) {
        this(message, null, null);
    }

    /**
     * An error caused by another exception.
     * @param message one clear sentence naming the problem
     * @param cause the underlying exception
     */
    public CellBridgeException(String message, Throwable cause) {
        this(message, null, cause);
    }

    /**
     * An error reported by the server.
     * @param message the server's {@code error}, unchanged
     * @param pythonType the server's {@code type} (Python exception class name), or null
     * @param cause the underlying exception, or null
     */
    public CellBridgeException(String message, String pythonType, Throwable cause) {
        super(message, cause);
        this.pythonType = pythonType;
    }

    /**
     * @return the Python exception class the server named in its error envelope, or null if none
     */
    public String pythonType() {
        return pythonType;
    }
}
