package qupath.ext.cellbridge.ui;

import javafx.concurrent.Task;
import javafx.event.ActionEvent;
import javafx.scene.control.Button;
import javafx.scene.control.ButtonType;
import javafx.stage.Modality;
import org.controlsfx.dialog.ProgressDialog;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;
import qupath.ext.cellbridge.bridge.CellBridgeException;
import qupath.fx.dialogs.Dialogs;
import qupath.fx.utils.FXUtils;
import qupath.lib.gui.QuPathGUI;

import java.util.concurrent.CancellationException;
import java.util.function.Consumer;

/**
 * A CellBridge command's long work as a JavaFX {@link Task} on QuPath's thread pool (one CellBridge task at a time),
 * with a non-modal progress dialog that has a Cancel button. The work never runs on the FX thread; its result is
 * handed to {@code onSuccess} on the FX thread; failures become error notifications with the message (a
 * {@link CellBridgeException}'s message is the Python side's one-line error).
 *
 * @param <T> the result type
 */
public final class BackgroundTask<T> extends Task<T> {

    private static final Logger logger = LoggerFactory.getLogger(BackgroundTask.class);

    /**
     * The work.
     *
     * @param <T> the result type
     */
    @FunctionalInterface
    public interface Work<T> {

        /**
         * @param task report progress with {@link BackgroundTask#progress}; poll {@link BackgroundTask#isCancelled}
         * @return the result
         * @throws Exception any failure (shown as a notification)
         */
        T run(BackgroundTask<T> task) throws Exception;
    }

    private final String title;
    private final Work<T> work;

    private BackgroundTask(String title, Work<T> work) {
        this.title = title;
        this.work = work;
        updateTitle(title);
    }

    /**
     * Start work in the background with a progress dialog.
     * @param qupath QuPath (its thread pool and window)
     * @param title the dialog and notification title
     * @param work the work
     * @param onSuccess given the result on the FX thread (may be null)
     * @param <T> the result type
     * @return the task (already submitted)
     */
    public static <T> BackgroundTask<T> start(QuPathGUI qupath, String title, Work<T> work, Consumer<T> onSuccess) {
        BackgroundTask<T> task = new BackgroundTask<>(title, work);
        task.setOnSucceeded(e -> {
            if (onSuccess != null) {
                try {
                    onSuccess.accept(task.getValue());
                } catch (RuntimeException ex) {
                    notifyError(title, ex);
                }
            }
        });
        task.setOnFailed(e -> notifyError(title, task.getException()));
        task.setOnCancelled(e -> Dialogs.showInfoNotification(title, "Cancelled"));
        FXUtils.runOnApplicationThread(() -> showDialog(qupath, task));
        qupath.getThreadPoolManager().getSingleThreadExecutor(BackgroundTask.class).submit(task);
        return task;
    }

    /**
     * Report progress (any thread).
     * @param fraction 0..1, or negative for "unknown"
     * @param message what is being done (null: unchanged)
     */
    public void progress(double fraction, String message) {
        if (fraction < 0)
            updateProgress(-1, 1);
        else
            updateProgress(Math.min(1.0, fraction), 1.0);
        if (message != null && !message.isBlank())
            updateMessage(message.strip());
    }

    @Override
    protected T call() throws Exception {
        return work.run(this);
    }

    /** Shows an error as a QuPath notification (on the FX thread), and logs it. */
    static void notifyError(String title, Throwable error) {
        if (error instanceof CancellationException) {
            FXUtils.runOnApplicationThread(() -> Dialogs.showInfoNotification(title, "Cancelled"));
            return;
        }
        String message = error == null ? "unknown error" : error.getMessage();
        if (error != null && !(error instanceof CellBridgeException) && !(error instanceof IllegalArgumentException))
            message = error.getClass().getSimpleName() + (message == null ? "" : ": " + message);
        logger.error("{}: {}", title, message, error);
        String text = message;
        FXUtils.runOnApplicationThread(() -> Dialogs.showErrorNotification(title, text));
    }

    private static void showDialog(QuPathGUI qupath, BackgroundTask<?> task) {
        if (task.isDone())
            return;
        ProgressDialog dialog = new ProgressDialog(task);
        dialog.initOwner(qupath.getStage());
        dialog.initModality(Modality.NONE);
        dialog.setTitle("CellBridge");
        dialog.getDialogPane().setHeaderText(task.title);
        dialog.getDialogPane().setGraphic(null);
        dialog.getDialogPane().getButtonTypes().add(ButtonType.CANCEL);
        Button cancel = (Button) dialog.getDialogPane().lookupButton(ButtonType.CANCEL);
        cancel.addEventFilter(ActionEvent.ACTION, e -> {
            task.cancel(false);  // the work polls isCancelled() and stops the server job / child process
            dialog.getDialogPane().setHeaderText("Cancelling...");
            cancel.setDisable(true);
            e.consume();
        });
    }
}
